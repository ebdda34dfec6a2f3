#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# tls-creds.sh DIR: make throw-away TLS credentials for the tests.
#
# In DIR:
#   ca-cert.pem ca-key.pem            the test CA
#   server-cert.pem server-key.pem    for localhost, 127.0.0.1 and ::1
#   client-cert.pem client-key.pem    a client signed by the CA
#   keys.psk                          PSK for identity "alice" (psktool format)
# and the same again in the directory layouts the clients expect:
#   DIR/server/  ca-cert.pem server-cert.pem server-key.pem
#   DIR/client/  ca-cert.pem client-cert.pem client-key.pem
#                (qemu's tls-creds-x509 endpoint=client; libnbd's
#                 tls-certificates=DIR)
#   DIR/other/   the same names for a client whose certificate another CA
#                signed (the server must refuse it); its ca-cert.pem holds
#                both CAs: ours, so the client trusts the server, and the
#                other, since qemu checks its own certificate against it
#   DIR/psk/     keys.psk (qemu's tls-creds-psk dir=)
#
# Keys are ECDSA P-256 (quick to make; GnuTLS and OpenSSL both take them).
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
command -v openssl >/dev/null || { echo "$0: openssl not found" >&2; exit 1; }
mkdir -p "$dir"/server "$dir"/client "$dir"/other "$dir"/psk
umask 077
work=$(mktemp -d "$dir/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

new_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$1" 2>/dev/null
}

# new_ca KEY CERT COMMON-NAME
new_ca() {
    new_key "$1"
    cat > "$work/ca.cnf" <<EOF
[req]
distinguished_name = dn
x509_extensions = ca
prompt = no
[dn]
CN = $3
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    openssl req -x509 -new -config "$work/ca.cnf" -key "$1" -days 3650 \
        -out "$2"
}

# new_leaf KEY CERT COMMON-NAME server|client CA-CERT CA-KEY
new_leaf() {
    new_key "$1"
    cat > "$work/leaf.cnf" <<EOF
[server]
basicConstraints = critical, CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    openssl req -new -key "$1" -subj "/O=Sendense tests/CN=$3" \
        -out "$work/leaf.csr"
    openssl x509 -req -in "$work/leaf.csr" -CA "$5" -CAkey "$6" \
        -set_serial "0x$(openssl rand -hex 8)" -days 3650 \
        -extfile "$work/leaf.cnf" -extensions "$4" -out "$2" 2>/dev/null
}

new_ca "$dir/ca-key.pem" "$dir/ca-cert.pem" "Sendense test CA"
new_leaf "$dir/server-key.pem" "$dir/server-cert.pem" localhost server \
    "$dir/ca-cert.pem" "$dir/ca-key.pem"
new_leaf "$dir/client-key.pem" "$dir/client-cert.pem" "test client" client \
    "$dir/ca-cert.pem" "$dir/ca-key.pem"

new_ca "$work/other-ca-key.pem" "$work/other-ca-cert.pem" "Another CA"
new_leaf "$dir/other/client-key.pem" "$dir/other/client-cert.pem" \
    "stranger" client "$work/other-ca-cert.pem" "$work/other-ca-key.pem"

cp "$dir/ca-cert.pem" "$dir/server-cert.pem" "$dir/server-key.pem" \
    "$dir/server/"
cp "$dir/ca-cert.pem" "$dir/client-cert.pem" "$dir/client-key.pem" \
    "$dir/client/"
cat "$dir/ca-cert.pem" "$work/other-ca-cert.pem" > "$dir/other/ca-cert.pem"

echo "alice:$(openssl rand -hex 32)" > "$dir/keys.psk"
cp "$dir/keys.psk" "$dir/psk/keys.psk"
