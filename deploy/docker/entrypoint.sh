#!/bin/sh
# Start TorchServe in the foreground (the container's lifetime is the server's). On arm64 images the
# build stored the Graviton settings of configs/graviton.env in /etc/ragserve/platform.env.
set -eu
if [ -f /etc/ragserve/platform.env ]; then
  set -a
  . /etc/ragserve/platform.env
  set +a
fi
exec torchserve --start --foreground --ncs "$@"
