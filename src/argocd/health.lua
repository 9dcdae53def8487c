-- Argo CD health check for the libvirt-operator kinds (group vm.libvirt-operator.io):
-- VirtualMachine, VMDisk, VMSnapshot, VMRestore and VMTemplate. One script for all five (it
-- reads obj.kind); examples/argocd/argocd-cm.yaml holds it under each kind's key.
--
-- Every kind reports Ready, Reconciling and Stalled conditions (exactly one True), each with
-- the metadata.generation it judged:
--   Stalled=True      -> Degraded     (cannot get there without you: the message says why)
--   Reconciling=True  -> Progressing
--   Ready=True        -> Healthy; a VirtualMachine stopped or paused as asked (printableStatus
--                        Stopped, Frozen or Paused) is Suspended, as Argo CD's KubeVirt check has it
--   no status yet, or conditions older than metadata.generation -> Progressing
-- Argo CD runs argocd-cm scripts without Lua's string and math libraries; none is used here.

local SUSPENDED = {
  VirtualMachine = { Stopped = true, Frozen = true, Paused = true },
}

local function condition(conditions, type)
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function said(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

-- JUDGED when it is older than GENERATION, else nil.
local function behind(judged, generation)
  if judged ~= nil and generation ~= nil and judged < generation then
    return judged
  end
  return nil
end

local function health()
  local status = obj.status
  if status == nil or status.conditions == nil then
    return { status = "Progressing", message = "Waiting for the operator to report status" }
  end
  local generation = obj.metadata.generation
  local ready = condition(status.conditions, "Ready")
  local reconciling = condition(status.conditions, "Reconciling")
  local stalled = condition(status.conditions, "Stalled")
  if ready == nil then
    return { status = "Progressing", message = "Waiting for the operator to report status" }
  end
  local stale = behind(status.observedGeneration, generation) or behind(ready.observedGeneration, generation)
  if stale ~= nil then
    return {
      status = "Progressing",
      message = "Waiting for the operator to judge generation " .. generation .. " (it last judged " .. stale .. ")",
    }
  end
  if stalled ~= nil and stalled.status == "True" then
    return { status = "Degraded", message = said(stalled, "Stalled") }
  end
  if reconciling ~= nil and reconciling.status == "True" then
    return { status = "Progressing", message = said(reconciling, "Reconciling") }
  end
  if ready.status == "True" then
    local suspended = SUSPENDED[obj.kind]
    if suspended ~= nil and suspended[status.printableStatus] then
      return { status = "Suspended", message = said(ready, status.printableStatus) }
    end
    return { status = "Healthy", message = said(ready, "Ready") }
  end
  return { status = "Progressing", message = said(ready, "Not ready") }
end

return health()
