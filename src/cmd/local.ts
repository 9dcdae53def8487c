// `make local` / `make local-down`: the embedded stack on loopback.
//   node src/cmd/local.ts up | down
import { basename, relative } from "node:path";
import { installPlugin } from "./local/plugin-install.ts";
import { kubeconfigPath, LOCAL_STACK, stackDown, stackUp } from "./local/stack.ts";
import { CACHE_BIN } from "./local/tools.ts";

const command = process.argv[2] ?? "up";
if (command === "up") {
  // Beside kubectl in the directory the PATH line below names, so `kubectl vm` works with it.
  const plugin = await installPlugin(CACHE_BIN);
  process.stderr.write(
    `==> kubectl vm plugin: ${plugin.map((p) => basename(p)).join(", ")} in ${CACHE_BIN}\n`,
  );
  await stackUp(LOCAL_STACK);
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
  console.error(`usage: local.ts up|down (got ${command})`);
  process.exitCode = 2;
}
