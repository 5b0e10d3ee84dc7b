#!/usr/bin/env bash
# Install everything, make sure Redis, PostgreSQL and RabbitMQ run on loopback, run lint, types and the
# tests: all of them on Redis, then the broker-sensitive ones (marker `broker`) again on RabbitMQ, with
# classic and with quorum queues.
# Usage: ./scripts/test.sh                     the whole suite, as CI runs it
#        ./scripts/test.sh [pytest arguments]  just those, on Redis (e.g. tests/unit, -k outage)
source "$(dirname "$0")/_venv.sh" test "[test]"

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "starting redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    echo "starting postgresql"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
if ! rabbitmqctl -q status >/dev/null 2>&1; then
    echo "starting rabbitmq"
    rabbitmq-server -detached
fi
for _ in $(seq 1 30); do
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 -q \
        && rabbitmqctl -q status >/dev/null 2>&1 && break
    sleep 1
done

"$VENV_PY" -m ruff check app workers scripts benchmarks tests
"$VENV_PY" -m mypy app workers tests

if [ "$#" -gt 0 ]; then
    exec "$VENV_PY" -m pytest "$@"
fi

# The whole suite runs as three shards side by side. Each test session has its own PostgreSQL database,
# RabbitMQ vhost and Redis database numbers (TEST_REDIS_DB=N takes N, N+1, N-6 and N-5; see
# tests/conftest.py), so they cannot see each other's work. Most of the suite waits on worker processes
# and on the default-settings fault tests' timers rather than on the CPU, so the wall time is about the
# longest shard's instead of the sum.
logs="$(mktemp -d)"
shard() {  # shard NAME VAR=VALUE... -- PYTEST_ARGUMENTS...
    local name="$1" environment=()
    shift
    while [ "$1" != "--" ]; do environment+=("$1"); shift; done
    shift
    env "${environment[@]}" "$VENV_PY" -m pytest "$@" >"$logs/$name.log" 2>&1
}
shard fault-tests TEST_REDIS_DB=14 -- tests/test_nothing_lost.py tests/test_reliability.py &
fault_tests=$!
shard redis TEST_REDIS_DB=12 -- --ignore=tests/test_nothing_lost.py --ignore=tests/test_reliability.py &
redis=$!
# The RabbitMQ passes (classic queues, then quorum queues) one after the other: the memory-alarm test blocks
# every publisher on the node for a moment.
(
    failed=0
    shard rabbitmq TEST_REDIS_DB=10 TEST_BROKER=amqp -- -m broker || failed=1
    shard rabbitmq-quorum TEST_REDIS_DB=10 TEST_BROKER=amqp-quorum -- -m broker || failed=1
    exit "$failed"
) &
rabbitmq=$!

status=0
wait "$fault_tests" || status=1
wait "$redis" || status=1
wait "$rabbitmq" || status=1
for name in fault-tests redis rabbitmq rabbitmq-quorum; do
    echo "===== $name ====="
    cat "$logs/$name.log"
done
for name in fault-tests redis rabbitmq rabbitmq-quorum; do
    echo "$name: $(tail -n 1 "$logs/$name.log")"
done
rm -rf "$logs"
exit "$status"
