-- Argo CD health check for kafkaproxy.io/KafkaConsumerProxy.
-- Install: add it to the argocd-cm ConfigMap under
--   resource.customizations.health.kafkaproxy.io_KafkaConsumerProxy
-- (see README "GitOps"). It reads the kstatus conditions the operator writes
-- (operator/src/reconcile/status.rs):
--   Stalled=True                 -> Degraded    (the user must fix something)
--   Ready=True reason=Suspended  -> Suspended   (spec.suspend, no pod left)
--   Ready=True reason=Paused     -> Suspended   (spec.paused: pods run, take no record)
--   Ready=True reason=OperationInProgress -> Progressing (pods stopped while an operation
--                                   changes the group's offsets)
--   Ready=True                   -> Healthy
--   Reconciling=True             -> Progressing (a rollout, too few pods available, pods stopping)
-- and Progressing while the operator has not yet reported on the latest generation.
-- KafkaReachable=False (the operator cannot read lag) does not change the health, as it does
-- not change Ready: the message says the lag is not being updated.
-- DeadLetterTopicsReady=False (a dead-letter topic missing, or one the Kafka user may not
-- describe) does not change it either: nothing fails until a record must be dead-lettered, and
-- brokers that create topics on first use create a missing one then. The message adds the
-- condition's reason and message (what to do), so a Healthy resource still shows it.
-- PartitionsStuck=True (a partition's committed offset has not moved for the stuck window) does
-- not change it either: the pods are fine, a record is not; the message names the partitions.
-- EndpointOutage=True (the sidecars see the app fail every record alike and wait for it) keeps
-- the health too: the pods are fine and nothing is lost; the message says how and since when.
-- Tested on every status the operator can write: samples.json, generated from the status code.
-- Argo CD runs this with gopher-lua (Lua 5.1): no goto, no integer division, no bit operators.
local hs = { status = "Progressing", message = "Waiting for the operator to report status" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "The operator has not yet processed generation " .. generation
  return hs
end
local by_type = {}
for _, c in ipairs(obj.status.conditions) do
  by_type[c.type] = c
end
local function describe(c, fallback)
  return (c.reason or fallback) .. ": " .. (c.message or "")
end
local function with_notes(message)
  local kafka = by_type["KafkaReachable"]
  if kafka ~= nil and kafka.status == "False" then
    message = message .. "; lag not updated: " .. (kafka.message or "Kafka unreachable")
  end
  local dead_letter = by_type["DeadLetterTopicsReady"]
  if dead_letter ~= nil and dead_letter.status == "False" then
    message = message .. "; " .. describe(dead_letter, "DeadLetterTopicMissing")
  end
  local stuck = by_type["PartitionsStuck"]
  if stuck ~= nil and stuck.status == "True" then
    message = message .. "; " .. describe(stuck, "PartitionsStuck")
  end
  local outage = by_type["EndpointOutage"]
  if outage ~= nil and outage.status == "True" then
    message = message .. "; " .. describe(outage, "EndpointFailsEveryRecord")
  end
  return message
end
local stalled, ready, reconciling = by_type["Stalled"], by_type["Ready"], by_type["Reconciling"]
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end
if ready ~= nil and ready.status == "True" then
  if ready.reason == "Suspended" or ready.reason == "Paused" then
    hs.status = "Suspended"
  elseif ready.reason == "OperationInProgress" then
    hs.status = "Progressing"
  else
    hs.status = "Healthy"
  end
  hs.message = with_notes(ready.message or ready.reason or "Ready")
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = describe(reconciling, "Reconciling")
  return hs
end
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready, "NotReady")
  return hs
end
return hs
