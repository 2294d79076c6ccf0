import * as fsp from 'node:fs/promises';
import path from 'node:path';
import ts from 'typescript';

/**
 * The proxy's sources as plain JavaScript, for tests that start the proxy in
 * a child process many times (kill -9 loops): transpiled file by file without
 * type checking (npm test type-checks separately), into a directory inside
 * the repository so that node_modules resolve. Returns the output root.
 */
export async function transpileSources(root = process.cwd(), out = path.join(root, '.test-build', String(process.pid))): Promise<string> {
  const walk = async (dir: string): Promise<void> => {
    for (const e of await fsp.readdir(path.join(root, dir), { withFileTypes: true })) {
      const rel = path.join(dir, e.name);
      if (e.isDirectory()) await walk(rel);
      else if (e.name.endsWith('.ts')) {
        const src = await fsp.readFile(path.join(root, rel), 'utf8');
        const js = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 }, fileName: rel }).outputText;
        await fsp.mkdir(path.join(out, dir), { recursive: true });
        await fsp.writeFile(path.join(out, rel.replace(/\.ts$/, '.js')), js);
      }
    }
  };
  await walk('src');
  await fsp.writeFile(path.join(out, 'package.json'), '{"type":"module"}');
  return out;
}
