"""The Lua scripts of the Redis job store (``jobs_redis``): each transition that must see and
change a job and its queue entry together runs as one script, so it is atomic."""

OWNED = """
local function owned(queue, group, entry, consumer)
  if not entry then return false end
  local p = redis.call('XPENDING', queue, group, entry, entry, 1)
  return #p > 0 and p[1][2] == consumer
end
local function drop(queue, group, entry)
  redis.call('XACK', queue, group, entry)
  redis.call('XDEL', queue, entry)
end
"""

CREATE = """
local entry = redis.call('XADD', KEYS[2], '*', 'job', ARGV[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'state', 'queued', 'request', ARGV[2], 'total', ARGV[3],
           'done', 0, 'created', ARGV[4], 'updated', ARGV[4], 'attempts', 0, 'entry', entry, 'options', ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'owner', ARGV[6])
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
end
return entry
"""

PAGE = """
local from = 0
if ARGV[2] ~= '' then
  local rank = redis.call('ZREVRANK', KEYS[1], ARGV[2])
  if not rank then return false end
  from = rank + 1
end
return redis.call('ZREVRANGE', KEYS[1], from, from + tonumber(ARGV[1]) - 1)
"""

START = (
    OWNED
    + """
local job, queue = KEYS[1], KEYS[2]
local group, consumer, entry, now, max = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local state = redis.call('HGET', job, 'state')
if not state or redis.call('HGET', job, 'entry') ~= entry then drop(queue, group, entry); return 'gone' end
if not owned(queue, group, entry, consumer) then return 'taken' end
if state ~= 'queued' and state ~= 'running' then drop(queue, group, entry); return state end
local attempts = redis.call('HINCRBY', job, 'attempts', 1)
if attempts > max then
  redis.call('HSET', job, 'state', 'failed', 'error', ARGV[6], 'updated', now, 'finished', now, 'attempts', max)
  drop(queue, group, entry)
  return 'failed'
end
redis.call('HSET', job, 'state', 'running', 'worker', consumer, 'updated', now, 'done', 0)
redis.call('HSETNX', job, 'started', now)
return 'running'
"""
)

HEARTBEAT = (
    OWNED
    + """
local job, queue = KEYS[1], KEYS[2]
local group, consumer, done, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local entry = redis.call('HGET', job, 'entry')
if not owned(queue, group, entry, consumer) then return 'lost' end
local state = redis.call('HGET', job, 'state')
if state ~= 'running' and state ~= 'cancelled' then return 'lost' end
redis.call('XCLAIM', queue, group, consumer, 0, entry, 'JUSTID')
redis.call('HSET', job, 'done', done, 'updated', now)
return state
"""
)

END = (
    OWNED
    + """
local job, queue, results = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, now, outcome, err, blob, done = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local entry = redis.call('HGET', job, 'entry')
if not owned(queue, group, entry, consumer) then return 'lost' end
local state = redis.call('HGET', job, 'state')
local answer = 'lost'
if state == 'running' then
  if outcome == 'done' then redis.call('SET', results, blob) end
  redis.call('HSET', job, 'state', outcome, 'updated', now, 'finished', now)
  if err ~= '' then redis.call('HSET', job, 'error', err) end
  if done ~= '' then redis.call('HSET', job, 'done', done) end
  answer = 'running'
elseif state == 'cancelled' then
  answer = 'cancelled'
end
drop(queue, group, entry)
return answer
"""
)

RELEASE = (
    OWNED
    + """
local job, queue = KEYS[1], KEYS[2]
local group, consumer, now, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local entry = redis.call('HGET', job, 'entry')
if not owned(queue, group, entry, consumer) then return 'lost' end
if redis.call('HGET', job, 'state') == 'running' then
  local fresh = redis.call('XADD', queue, '*', 'job', id)
  redis.call('HSET', job, 'entry', fresh, 'state', 'queued', 'updated', now)
  if tonumber(redis.call('HGET', job, 'attempts')) > 0 then redis.call('HINCRBY', job, 'attempts', -1) end
end
drop(queue, group, entry)
return 'released'
"""
)

CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'queued' or state == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'updated', ARGV[1], 'finished', ARGV[1])
  return 'cancelled'
end
return state
"""


__all__ = ["CANCEL", "CREATE", "END", "HEARTBEAT", "PAGE", "RELEASE", "START"]
