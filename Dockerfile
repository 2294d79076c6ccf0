# deltaglider-proxy on the current Node.js LTS (26, "Lithium", slim Debian
# bookworm) with Debian's xdelta3, running as the unprivileged user node.
# Filesystem backend in the /data volume by default; set DELTAGLIDER_PROXY_S3_*
# for the S3 backend (docker-compose.yml runs it on MinIO).
#
#   docker build -t deltaglider-proxy .
#   docker run -p 127.0.0.1:9000:9000 -v dgp-data:/data \
#     -e DELTAGLIDER_PROXY_ACCESS_KEY_ID=... -e DELTAGLIDER_PROXY_SECRET_ACCESS_KEY=... \
#     deltaglider-proxy
ARG NODE_IMAGE=node:26.13-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bench ./bench
RUN npm run build && npm prune --omit=dev

FROM ${NODE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends xdelta3 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown node:node /data
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The web console's files are served from the package (no CDN).
COPY static ./static
COPY package.json deltaglider-proxy.toml.example ./
USER node
# Env beats the TOML file, so a listen_addr in a mounted file needs this
# variable (or --listen) instead; the health check follows either.
ENV DELTAGLIDER_PROXY_LISTEN_ADDR=0.0.0.0:9000 \
    DELTAGLIDER_PROXY_DATA_DIR=/data \
    DELTAGLIDER_PROXY_LOG_FORMAT=json \
    NODE_ENV=production
VOLUME ["/data"]
EXPOSE 9000
# GET /_/health on the address the server was configured with (file, env,
# flags: read from PID 1), not a fixed port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "dist/src/healthcheck.js"]
ENTRYPOINT ["node", "dist/src/main.js"]
