# deltaglider-proxy: Node 20 slim with Debian's xdelta3, running as non-root.
# Filesystem backend in the /data volume by default; set DELTAGLIDER_PROXY_S3_*
# for the S3 backend (docker-compose.yml runs it on MinIO).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bench ./bench
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends xdelta3 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown node:node /data
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json deltaglider-proxy.toml.example ./
USER node
ENV DELTAGLIDER_PROXY_LISTEN_ADDR=0.0.0.0:9000 \
    DELTAGLIDER_PROXY_DATA_DIR=/data \
    NODE_ENV=production
VOLUME ["/data"]
EXPOSE 9000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9000/health').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/src/main.js"]
