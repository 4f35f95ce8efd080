#!/bin/sh
# bench/apps/with_redis.sh PORT COMMAND...: a throwaway redis-server (no persistence)
# on 127.0.0.1:PORT, then COMMAND in this process. The bench stops the whole process
# group, redis-server with it.
port=$1
shift
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
i=0
while ! redis-cli -p "$port" ping >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -gt 100 ] && { echo "redis-server did not start on $port" >&2; exit 1; }
    sleep 0.05
done
exec "$@"
