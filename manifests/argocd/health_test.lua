-- Runs health.lua on sample resources, as Argo CD does: `obj` set, only the base, string,
-- table and math libraries at hand.
--   lua5.4 manifests/argocd/health_test.lua SAMPLES.lua
-- SAMPLES.lua returns a list of { name = ..., expect = { status = ..., message = ... },
-- object = ... }: samples.json (generated from the operator's status code) in Lua form, which
-- `cargo test` (tests/tests/manifests.rs) writes and passes here. A sample passes when the
-- health is the expected one and its message contains the expected text.
-- Prints one line per sample and a summary; exits non-zero when any sample fails.
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local samples = assert(dofile(assert(arg[1], "usage: health_test.lua SAMPLES.lua")))
local statuses = { Healthy = true, Progressing = true, Degraded = true, Suspended = true,
                   Missing = true, Unknown = true }
local function health(obj)
  local env = { obj = obj, ipairs = ipairs, pairs = pairs, next = next, type = type,
                tostring = tostring, tonumber = tonumber, string = string, table = table,
                math = math }
  local chunk = assert(loadfile(dir .. "/health.lua", "t", env))
  return chunk()
end
local failed = 0
for _, s in ipairs(samples) do
  local ok, hs = pcall(health, s.object)
  local problem
  if not ok then
    problem = "error: " .. tostring(hs)
  elseif type(hs) ~= "table" or not statuses[hs.status] then
    problem = "not an Argo CD health status: " .. tostring(type(hs) == "table" and hs.status or hs)
  elseif hs.status ~= s.expect.status then
    problem = string.format("want %s, got %s (%s)", s.expect.status, hs.status, tostring(hs.message))
  elseif type(hs.message) ~= "string" or not hs.message:find(s.expect.message, 1, true) then
    problem = string.format("message %q does not contain %q", tostring(hs.message), s.expect.message)
  end
  if problem then
    print(string.format("FAIL %s: %s", s.name, problem))
    failed = failed + 1
  else
    print(string.format("ok   %s: %s (%s)", s.name, hs.status, hs.message))
  end
end
print(string.format("%d passed, %d failed", #samples - failed, failed))
os.exit(failed == 0 and 0 or 1)
