-- wrk script for the read mixes of benches/reads.sh (docs/benchmarks.md, "Reads"):
--   wrk -t2 -c32 -d10s -s benches/mixed.lua URL -- TOKEN CARDS_FILE MODE RUN_ID
-- TOKEN: a bearer token that may read and move money on every card (the bootstrap admin's);
-- CARDS_FILE: card ids, one a line (payd-load --cards-file writes it); MODE: `reads` (balance 50 %,
-- card 15 %, statement page 15 %, the card's transfer list 10 %, /auth/me 10 %) or `mixed` (the same
-- reads, and one transfer between two random cards after every 10 of them); RUN_ID: makes the
-- transfers' idempotency keys unique across runs. Every answer should be 200 or 201: wrk's
-- "Non-2xx or 3xx responses" line counts the others.
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

function init(args)
  token, cards_file, mode, run_id = args[1], args[2], args[3] or "reads", args[4] or "0"
  assert(token and cards_file, "usage: -- TOKEN CARDS_FILE [reads|mixed] [RUN_ID]")
  cards = {}
  for line in io.lines(cards_file) do
    local id = line:match("^%s*(%d+)")
    if id then table.insert(cards, id) end
  end
  assert(#cards >= 2, "need at least two cards in " .. cards_file)
  n = 0
  math.randomseed(tid * 7919 + os.time())
  auth = "Bearer " .. token
  read_headers = { ["Authorization"] = auth }
end

local function pick()
  return cards[math.random(#cards)]
end

local function read()
  local r, card = math.random(100), pick()
  local path
  if r <= 50 then
    path = "/api/v1/cards/" .. card .. "/balance"
  elseif r <= 65 then
    path = "/api/v1/cards/" .. card
  elseif r <= 80 then
    path = "/api/v1/cards/" .. card .. "/statement?limit=20"
  elseif r <= 90 then
    path = "/api/v1/transfers?card_id=" .. card .. "&limit=20"
  else
    path = "/api/v1/auth/me"
  end
  return wrk.format("GET", path, read_headers)
end

function request()
  n = n + 1
  if mode == "mixed" and n % 11 == 0 then
    local from, to = pick(), pick()
    while to == from do to = pick() end
    local body = '{"from_card_id":' .. from .. ',"to_card_id":' .. to .. ',"amount":50000}'
    return wrk.format("POST", "/api/v1/transfers", {
      ["Authorization"] = auth,
      ["Content-Type"] = "application/json",
      ["Idempotency-Key"] = "wrk-" .. run_id .. "-" .. tid .. "-" .. n,
    }, body)
  end
  return read()
end
