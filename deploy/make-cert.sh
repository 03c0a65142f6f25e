#!/usr/bin/env sh
# A self-signed TLS certificate for nginx (deploy/nginx.conf), valid for this host's name,
# localhost and the addresses given: ./deploy/make-cert.sh 192.168.1.20 [more addresses...]
# Browsers ask once to accept it; a host with a public name should use a real certificate.
set -eu
dir="$(dirname "$0")/certs"
mkdir -p "$dir"
san="DNS:localhost,DNS:$(hostname),IP:127.0.0.1"
for ip in "$@"; do san="$san,IP:$ip"; done
openssl req -x509 -newkey rsa:2048 -sha256 -days 30 -nodes \
  -keyout "$dir/server.key" -out "$dir/server.crt" \
  -subj "/CN=$(hostname)" -addext "subjectAltName=$san"
echo "wrote $dir/server.crt and server.key for $san"
