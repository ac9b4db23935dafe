-- Argo CD health check for kafkaproxy.io/KafkaConsumerProxy.
-- Install: add it to the argocd-cm ConfigMap under
--   resource.customizations.health.kafkaproxy.io_KafkaConsumerProxy
-- (see README "GitOps"). It reads the kstatus conditions the operator writes.
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
local stalled, ready, reconciling = by_type["Stalled"], by_type["Ready"], by_type["Reconciling"]
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (stalled.reason or "Stalled") .. ": " .. (stalled.message or "")
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
if ready ~= nil and ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = ready.message or "Suspended"
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = (reconciling.reason or "Reconciling") .. ": " .. (reconciling.message or "")
  return hs
end
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
  return hs
end
return hs
