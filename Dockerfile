# One image for the controller and the node agent (the chart picks the entry point).
# Node 24 runs the TypeScript sources directly (type stripping); no build step.
FROM node:24-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY src ./src
COPY crds ./crds
USER 65532:65532
ENTRYPOINT []
CMD ["node", "src/cmd/controller.ts"]
