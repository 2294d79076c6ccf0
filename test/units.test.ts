import t from 'tap';
import { S3Error, S3_ERRORS } from '../src/errors.js';
import { CHECKSUM_ALGORITHMS, newChecksum } from '../src/http/checksums.js';
import { escapeXml, parseXml, xmlDocument } from '../src/http/xml.js';
import { decodeListedKey } from '../src/storage/s3/s3-backend.js';

t.test('checksums: the standard check values of "123456789"', async (t) => {
  const want: Record<string, string> = {
    crc32: Buffer.from('cbf43926', 'hex').toString('base64'),
    crc32c: Buffer.from('e3069283', 'hex').toString('base64'),
    crc64nvme: Buffer.from('ae8b14860a799888', 'hex').toString('base64'),
    sha1: Buffer.from('f7c3bc1d808e04732adf679965ccc34ca7ae3441', 'hex').toString('base64'),
    sha256: Buffer.from('15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225', 'hex').toString('base64'),
  };
  for (const alg of CHECKSUM_ALGORITHMS) {
    const d = newChecksum(alg);
    d.update(Buffer.from('1234'));
    d.update(Buffer.from('56789'));
    t.equal(await d.digest(), want[alg], alg);
  }
});

t.test('XML out: exact escaping', async (t) => {
  t.equal(escapeXml(`a&b<c>"d'e\rf`), 'a&amp;b&lt;c&gt;&quot;d&apos;e&#13;f');
  const doc = xmlDocument('R', { Key: 'x&y', N: 3, B: false, Skip: undefined, List: [{ A: 1 }, { A: 2 }] });
  t.equal(doc, '<?xml version="1.0" encoding="UTF-8"?>\n<R xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Key>x&amp;y</Key><N>3</N><B>false</B><List><A>1</A></List><List><A>2</A></List></R>');
});

t.test('XML in: documents and references, MalformedXML otherwise', async (t) => {
  const d = parseXml('<Delete><Object><Key>a&#13;b &amp; &#34;c&#34;</Key></Object></Delete>') as { Delete: { Object: { Key: string }[] } };
  t.equal(d.Delete.Object[0].Key, 'a\rb & "c"');
  for (const bad of ['', '<a>', '<a></b>', 'not xml']) t.throws(() => parseXml(bad), { code: 'MalformedXML' }, JSON.stringify(bad));
});

t.test('error catalog', async (t) => {
  for (const [code, [status, message]] of Object.entries(S3_ERRORS)) {
    t.ok(status >= 300 && status < 600 && message.length > 0, code);
  }
  const e = new S3Error('NoSuchKey', undefined, { fields: { Key: 'k' } });
  t.equal(e.status, 404);
  t.equal(e.message, 'The specified key does not exist.');
});

t.test('S3 listing keys with encoding-type=url', async (t) => {
  t.equal(decodeListedKey('a+b%2Bc%20d%0D'), 'a b+c d\r');
});
