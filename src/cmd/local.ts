// `make local` / `make local-down` / `make image`: the embedded stack, and the operator's image.
//   node src/cmd/local.ts up | down | image
//   LOCAL_OPERATOR=0 (up): no controller and agent from this checkout, for the chart's instead.
import { basename, relative } from "node:path";
import { buildOperatorImage } from "./local/images.ts";
import { importImage } from "./local/node.ts";
import { installPlugin } from "./local/plugin-install.ts";
import { runningPid } from "./local/processes.ts";
import { kubeconfigPath, LOCAL_STACK, stackDown, stackUp } from "./local/stack.ts";
import { CACHE_BIN } from "./local/tools.ts";

const command = process.argv[2] ?? "up";
if (command === "image") {
  const image = await buildOperatorImage();
  console.log(`image ${image.reference}: ${image.tar} (${(image.bytes / 2 ** 20).toFixed(0)} MiB)`);
  if (runningPid(LOCAL_STACK.stateDir, "containerd")) {
    await importImage(LOCAL_STACK.stateDir, image.tar, image.reference);
    console.log("imported into the local node's containerd; the chart's default image names it");
  } else {
    console.log("the local node is not running (make local); elsewhere: ctr -n k8s.io images import <tar>");
  }
} else if (command === "up") {
  // Beside kubectl in the directory the PATH line below names, so `kubectl vm` works with it.
  const plugin = await installPlugin(CACHE_BIN);
  process.stderr.write(
    `==> kubectl vm plugin: ${plugin.map((p) => basename(p)).join(", ")} in ${CACHE_BIN}\n`,
  );
  await stackUp({ ...LOCAL_STACK, operator: process.env.LOCAL_OPERATOR !== "0" });
  const kc = relative(process.cwd(), kubeconfigPath(LOCAL_STACK)) || kubeconfigPath(LOCAL_STACK);
  console.log(`
The local stack is up. Use it with:

  export KUBECONFIG=$PWD/${kc} PATH=${CACHE_BIN}:$PATH
  kubectl get nodes
  kubectl apply -f examples/
  kubectl get libvirt
  kubectl vm status

Stop it with: make local-down`);
} else if (command === "down") {
  const stopped = await stackDown(LOCAL_STACK);
  console.log(stopped.length ? `stopped: ${stopped.join(", ")}` : "nothing was running");
} else {
  console.error(`usage: local.ts up|down|image (got ${command})`);
  process.exitCode = 2;
}
