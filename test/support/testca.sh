#!/bin/sh
# Makes a throwaway test CA and two server certificates in DIR (nothing is
# committed; tests call this at start-up into a temporary directory):
#   ca.pem                      the CA certificate (pass it as --ca-file)
#   server.pem / server.key     for 127.0.0.1, ::1 and localhost
#   wrong.pem / wrong.key       for wrong.example only (host-name check must refuse it)
# EC P-256 keys: generated in milliseconds, unlike RSA.
set -eu
dir=${1:?usage: testca.sh DIR}
mkdir -p "$dir"
cd "$dir"
export OPENSSL_CONF=/dev/null

openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout ca.key -out ca.pem -days 2 -subj "/CN=tickerd test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null

issue() { # name subject-alt-names
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$2" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
issue server "IP:127.0.0.1,IP:::1,DNS:localhost"
issue wrong "DNS:wrong.example"
