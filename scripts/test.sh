#!/usr/bin/env bash
# Install everything, make sure Redis, PostgreSQL and RabbitMQ run on loopback, run lint, types and the
# tests: all of them on Redis, then the broker-sensitive ones (marker `broker`) again on RabbitMQ.
# Usage: ./scripts/test.sh [pytest arguments]
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
"$VENV_PY" -m pytest "$@"
TEST_BROKER=amqp "$VENV_PY" -m pytest -m broker "$@"
