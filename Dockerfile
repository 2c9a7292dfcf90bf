# The Meridian image: every process (registry node, control-plane peer,
# replication worker, front door) and the `meridian` CLI. nats-server is not
# in it: NATS runs in its own containers (deploy/compose/).
#
#   docker build -t meridian:local .
#   docker run --rm meridian:local help                      # the CLI (ENTRYPOINT bin/meridian)
#   docker run --rm --entrypoint node meridian:local dist/node/server.js   # a process
#
# Build stage: every dependency, the TypeScript build, then the dev
# dependencies pruned. `npm install`, not `npm ci`, follows package-lock.json
# here: the lock is written with omit-lockfile-registry-resolved and lacks
# other platforms' optional packages, which `npm ci` refuses (see
# scripts/bootstrap.mjs).
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund
COPY tsconfig.json ./
COPY protocol protocol
COPY mesh-client mesh-client
COPY node node
COPY control-plane control-plane
COPY replication replication
COPY cli cli
COPY testing testing
COPY benchmarks benchmarks
COPY chaos chaos
COPY security security
RUN npx tsc -p tsconfig.json \
 && find dist -type d -name test -prune -exec rm -rf {} + \
 && rm -rf dist/testing dist/benchmarks dist/chaos dist/security dist/.tsbuildinfo \
 && find dist -name '*.map' -delete \
 && npm prune --omit=dev --no-audit --no-fund

# Runtime: production dependencies, dist/, the .proto files the gRPC loader
# reads, the dashboard's page (ui/, served as is at /ui/), and openssl for `meridian certs`. Runs as the unprivileged `meridian`
# user; /data and /secrets belong to it, so fresh named volumes mounted there
# do too.
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 meridian \
 && useradd --system --uid 10001 --gid meridian --home-dir /data --shell /usr/sbin/nologin meridian \
 && mkdir -p /data /secrets /nats-config \
 && chown meridian:meridian /data /secrets /nats-config
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY protocol/proto ./protocol/proto
COPY ui ./ui
COPY bin ./bin
COPY deploy/compose/init-secrets.mjs ./deploy/compose/init-secrets.mjs
USER meridian
ENTRYPOINT ["node", "bin/meridian"]
CMD ["help"]
