// `make local` / `make local-down`: the embedded stack on loopback.
//   node src/cmd/local.ts up | down
import { relative } from "node:path";
import { kubeconfigPath, LOCAL_STACK, stackDown, stackUp } from "./local/stack.ts";
import { CACHE_BIN } from "./local/tools.ts";

const command = process.argv[2] ?? "up";
if (command === "up") {
  await stackUp(LOCAL_STACK);
  const kc = relative(process.cwd(), kubeconfigPath(LOCAL_STACK)) || kubeconfigPath(LOCAL_STACK);
  console.log(`
The local stack is up. Use it with:

  export KUBECONFIG=$PWD/${kc} PATH=${CACHE_BIN}:$PATH
  kubectl get nodes
  kubectl apply -f examples/
  kubectl get libvirt

Stop it with: make local-down`);
} else if (command === "down") {
  const stopped = await stackDown(LOCAL_STACK);
  console.log(stopped.length ? `stopped: ${stopped.join(", ")}` : "nothing was running");
} else {
  console.error(`usage: local.ts up|down (got ${command})`);
  process.exitCode = 2;
}
