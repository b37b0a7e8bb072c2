#!/bin/sh
# Like the official redis image: a redis-server run without a config file
# answers clients of other containers. Without a password, Redis's protected
# mode would refuse every client that is not on loopback.
set -e
if [ "${1:-}" = redis-server ]; then
  shift
  exec redis-server --protected-mode no "$@"
fi
exec "$@"
