-- HTTP/1.1 pipelining for wrk: `depth` requests per write (default 16). sinew-bench http
-- writes it out for its plaintext-pipelined case; scripts/cpu-per-request.sh passes it to wrk.
init = function(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format(nil, nil)
  end
  req = table.concat(r)
end

request = function()
  return req
end
