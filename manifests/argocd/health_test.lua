-- Runs health.lua against sample objects: `lua5.4 manifests/argocd/health_test.lua`.
-- Exits non-zero on the first mismatch. Run by `cargo test` (tests/tests/manifests.rs).
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local function health(obj)
  local env = setmetatable({ obj = obj }, { __index = _G })
  local chunk = assert(loadfile(dir .. "/health.lua", "t", env))
  return chunk()
end
local function cond(t, status, reason, message)
  return { type = t, status = status, reason = reason, message = message or "" }
end
local cases = {
  { "no status yet", { metadata = { generation = 1 } }, "Progressing" },
  { "old generation", { metadata = { generation = 3 }, status = { observedGeneration = 2,
      conditions = { cond("Ready", "True", "Available") } } }, "Progressing" },
  { "ready", { metadata = { generation = 2 }, status = { observedGeneration = 2,
      conditions = { cond("Ready", "True", "Available"), cond("Reconciling", "False", "Available"),
                     cond("Stalled", "False", "Available") } } }, "Healthy" },
  { "rolling out", { metadata = { generation = 2 }, status = { observedGeneration = 2,
      conditions = { cond("Ready", "False", "DeploymentProgressing"),
                     cond("Reconciling", "True", "DeploymentProgressing") } } }, "Progressing" },
  { "invalid spec", { metadata = { generation = 2 }, status = { observedGeneration = 2,
      conditions = { cond("Ready", "False", "InvalidSpec", "template: bad"),
                     cond("Stalled", "True", "InvalidSpec", "template: bad") } } }, "Degraded" },
  { "suspended", { metadata = { generation = 4 }, status = { observedGeneration = 4,
      conditions = { cond("Ready", "False", "Suspended", "spec.suspend is true") } } }, "Suspended" },
  { "replicas unavailable", { metadata = { generation = 1 }, status = { observedGeneration = 1,
      conditions = { cond("Ready", "False", "ReplicasUnavailable"), cond("Reconciling", "False", "ReplicasUnavailable") } } }, "Degraded" },
}
local failed = 0
for _, c in ipairs(cases) do
  local name, obj, want = c[1], c[2], c[3]
  local hs = health(obj)
  if hs.status ~= want then
    print(string.format("FAIL %s: want %s, got %s (%s)", name, want, hs.status, hs.message))
    failed = failed + 1
  else
    print(string.format("ok   %s: %s (%s)", name, hs.status, hs.message))
  end
end
print(string.format("%d passed, %d failed", #cases - failed, failed))
os.exit(failed == 0 and 0 or 1)
