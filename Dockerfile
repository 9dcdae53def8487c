# One image for the controller and the node agent (the chart picks the entry point).
# They run JavaScript compiled by tsc (tsconfig.build.json: the two entry points and what they
# import, emit only; tsconfig.json checks the types), not the TypeScript sources: Node's type
# stripping would cost each process ~25 MiB of RSS. scripts/image/operator-image.sh builds the
# same image without Docker (make image).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx --no-install tsc -p tsconfig.build.json

FROM node:24-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY crds ./crds
USER 65532:65532
ENTRYPOINT []
CMD ["node", "dist/cmd/controller.js"]
