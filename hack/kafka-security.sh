# shellcheck shell=bash disable=SC2034 # (its variables are used by the scripts that source it)
# The secured side of the local broker: a throw-away CA, the broker's and the clients'
# certificates, the SCRAM and PLAIN users, and what .dev/env exports to reach each secured
# listener. Sourced by hack/dev-up.sh after hack/lib.sh; it does nothing by itself.
#
# Listeners (same broker, each on loopback, each with its own EC_*_PORT):
#   SCRAM512  SASL_SSL, SCRAM-SHA-512 only          EC_KAFKA_SCRAM512_PORT   (9094)
#   SCRAM256  SASL_SSL, SCRAM-SHA-256 only          EC_KAFKA_SCRAM256_PORT   (9095)
#   SASLPLAIN SASL_SSL, PLAIN only                  EC_KAFKA_SASL_PLAIN_PORT (9096)
#   MTLS      SSL, a client certificate required    EC_KAFKA_MTLS_PORT       (9097)
# One mechanism per listener, so a client that connects proves which mechanism it spoke.
# They advertise the host name `localhost`, the only name in the broker certificate's SAN:
# clients verify it (librdkafka's default), and connecting as 127.0.0.1 fails verification.
#
# Principals: `admin` is a super user (the stack's tools; SCRAM, PLAIN and certificate CN
# admin); `consumer` has no ACL at all until a test grants it some (SCRAM, PLAIN, CN consumer).
# Certificates map to the principal of their CN (ssl.principal.mapping.rules).

KAFKA_SCRAM512_PORT="${EC_KAFKA_SCRAM512_PORT:-9094}"
KAFKA_SCRAM256_PORT="${EC_KAFKA_SCRAM256_PORT:-9095}"
KAFKA_SASL_PLAIN_PORT="${EC_KAFKA_SASL_PLAIN_PORT:-9096}"
KAFKA_MTLS_PORT="${EC_KAFKA_MTLS_PORT:-9097}"
# The broker certificate's only name; the secured listeners advertise it.
KAFKA_TLS_HOST=localhost
KAFKA_PKI_DIR="$EC_DEV_DIR/kafka-pki"
# The SCRAM users the storage holds, with a fingerprint of their passwords: when the PKI
# directory (and with it the passwords) is made anew over an old data directory, the users
# are updated once through the running broker.
KAFKA_SCRAM_MARKER_NAME=.ec-scram-users
# Client certificates: ten years, like the CA; the expired one ended long ago.
KAFKA_CERT_DAYS=3650

# kafka_secured_ports: "NAME PORT VAR" per secured listener, for the port checks.
kafka_secured_ports() {
  printf '%s\n' "kafka (SCRAM-SHA-512) $KAFKA_SCRAM512_PORT EC_KAFKA_SCRAM512_PORT" \
    "kafka (SCRAM-SHA-256) $KAFKA_SCRAM256_PORT EC_KAFKA_SCRAM256_PORT" \
    "kafka (SASL PLAIN) $KAFKA_SASL_PLAIN_PORT EC_KAFKA_SASL_PLAIN_PORT" \
    "kafka (mTLS) $KAFKA_MTLS_PORT EC_KAFKA_MTLS_PORT"
}

require_kafka_secured_ports_free() {
  local line name port var
  while read -r line; do
    var="${line##* }"
    line="${line% *}"
    port="${line##* }"
    name="${line% *}"
    require_port_free "$name" "$port" "$var"
  done < <(kafka_secured_ports)
}

# _sign NAME CN EXTS [CA]: NAME.key (EC P-256, PKCS#8, as Kafka's PEM keystore wants) and
# NAME.crt signed by CA (default: ca) with the extensions EXTS.
_sign() {
  local name="$1" cn="$2" exts="$3" ca="${4:-ca}"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$name.key" -out "$name.csr" -subj "/CN=$cn" 2>/dev/null
  printf '%s\n' "$exts" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial \
    -out "$name.crt" -days "$KAFKA_CERT_DAYS" -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1.key" -out "$1.crt" -days "$KAFKA_CERT_DAYS" -subj "/CN=$2" 2>/dev/null
}

# _expired NAME CN: a client certificate of the local CA whose validity ended in 2021
# (`openssl ca` is the one subcommand of OpenSSL 3.0 that takes explicit dates).
_expired() {
  local name="$1" cn="$2"
  mkdir -p ca-db
  : >ca-db/index.txt
  cat >ca-db/ca.cnf <<EOF
[ca]
default_ca = local
[local]
database = ca-db/index.txt
new_certs_dir = ca-db
serial = ca-db/serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
[client]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
EOF
  openssl rand -hex 8 >ca-db/serial
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$name.key" -out "$name.csr" -subj "/CN=$cn" 2>/dev/null
  openssl ca -batch -config ca-db/ca.cnf -cert ca.crt -keyfile ca.key -extensions client \
    -startdate 20200101000000Z -enddate 20210101000000Z -in "$name.csr" -out "$name.crt" 2>/dev/null
  rm -rf ca-db "$name.csr"
}

# gen_kafka_pki: everything the secured listeners and their tests need, once per checkout.
gen_kafka_pki() {
  [ -f "$KAFKA_PKI_DIR/.complete" ] && return 0
  log "kafka-pki: generating a CA, broker and client certificates and SASL passwords in .dev/kafka-pki"
  rm -rf "$KAFKA_PKI_DIR"
  mkdir -p "$KAFKA_PKI_DIR"
  (
    cd "$KAFKA_PKI_DIR"
    umask 077
    _ca ca eventconsumer-kafka-local-ca
    _sign broker "$KAFKA_TLS_HOST" "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$KAFKA_TLS_HOST"
    # Kafka's PEM keystore: the private key and the certificate chain in one file.
    cat broker.key broker.crt >broker.pem
    local client="basicConstraints=CA:FALSE
keyUsage=digitalSignature
extendedKeyUsage=clientAuth"
    _sign admin admin "$client"
    _sign consumer consumer "$client"
    _expired consumer-expired consumer
    # A CA the broker does not trust, with a client certificate of its own: an untrusted
    # client certificate, and (given to a client as its CA) a wrong CA.
    _ca rogue-ca eventconsumer-rogue-ca
    _sign rogue-consumer consumer "$client" rogue-ca
    rm -f ./*.srl
    {
      echo "EC_KAFKA_ADMIN_PASSWORD=$(openssl rand -hex 16)"
      echo "EC_KAFKA_CONSUMER_PASSWORD=$(openssl rand -hex 16)"
    } >users.env
  )
  touch "$KAFKA_PKI_DIR/.complete"
}

kafka_password() { sed -n "s/^$1=//p" "$KAFKA_PKI_DIR/users.env"; }

# kafka_scram_args: `format` arguments creating both SCRAM credentials of both users.
kafka_scram_args() {
  local user pw mech
  for user in admin consumer; do
    if [ $user = admin ]; then pw="$(kafka_password EC_KAFKA_ADMIN_PASSWORD)"; else pw="$(kafka_password EC_KAFKA_CONSUMER_PASSWORD)"; fi
    for mech in SCRAM-SHA-512 SCRAM-SHA-256; do
      printf '%s\n' --add-scram "$mech=[name=$user,password=$pw]"
    done
  done
}

kafka_scram_fingerprint() { sha256sum "$KAFKA_PKI_DIR/users.env" | cut -c1-16; }

# kafka_security_sed: sed arguments filling the secured listeners' @...@ values of
# hack/kafka/server.properties.
kafka_security_sed() {
  printf '%s\n' \
    -e "s|@KAFKA_SCRAM512_PORT@|$KAFKA_SCRAM512_PORT|g" \
    -e "s|@KAFKA_SCRAM256_PORT@|$KAFKA_SCRAM256_PORT|g" \
    -e "s|@KAFKA_SASL_PLAIN_PORT@|$KAFKA_SASL_PLAIN_PORT|g" \
    -e "s|@KAFKA_MTLS_PORT@|$KAFKA_MTLS_PORT|g" \
    -e "s|@KAFKA_TLS_HOST@|$KAFKA_TLS_HOST|g" \
    -e "s|@KAFKA_PKI_DIR@|$KAFKA_PKI_DIR|g" \
    -e "s|@KAFKA_ADMIN_PASSWORD@|$(kafka_password EC_KAFKA_ADMIN_PASSWORD)|g" \
    -e "s|@KAFKA_CONSUMER_PASSWORD@|$(kafka_password EC_KAFKA_CONSUMER_PASSWORD)|g"
}

# ensure_scram_users DATA_DIR: after the broker is ready, (re)create the SCRAM users once
# when the storage was formatted with other passwords (or before SCRAM users existed). One
# call per user and mechanism: the broker refuses two changes of one user in one request.
ensure_scram_users() {
  local data="$1" want user pw mech
  want="$(kafka_scram_fingerprint)"
  [ "$(cat "$data/$KAFKA_SCRAM_MARKER_NAME" 2>/dev/null)" = "$want" ] && return 0
  log "kafka: creating the SCRAM users admin and consumer"
  for user in admin consumer; do
    if [ $user = admin ]; then pw="$(kafka_password EC_KAFKA_ADMIN_PASSWORD)"; else pw="$(kafka_password EC_KAFKA_CONSUMER_PASSWORD)"; fi
    for mech in SCRAM-SHA-512 SCRAM-SHA-256; do
      # Its output echoes the password: kept out of the logs.
      kafka_tool kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --alter \
        --entity-type users --entity-name "$user" --add-config "$mech=[password=$pw]" >/dev/null 2>&1 ||
        die "creating the SCRAM user $user ($mech) failed" "make dev-down ARGS=--purge, then make dev-up"
    done
  done
  echo "$want" >"$data/$KAFKA_SCRAM_MARKER_NAME"
}

# kafka_security_env: the .dev/env lines a test needs to reach each secured listener.
kafka_security_env() {
  local h="$KAFKA_TLS_HOST" p="$KAFKA_PKI_DIR"
  cat <<EOF
# The broker's secured listeners (hack/kafka-security.sh): bootstrap, CA, users, certificates.
export EC_KAFKA_SCRAM512_BOOTSTRAP="$h:$KAFKA_SCRAM512_PORT"
export EC_KAFKA_SCRAM256_BOOTSTRAP="$h:$KAFKA_SCRAM256_PORT"
export EC_KAFKA_SASL_PLAIN_BOOTSTRAP="$h:$KAFKA_SASL_PLAIN_PORT"
export EC_KAFKA_MTLS_BOOTSTRAP="$h:$KAFKA_MTLS_PORT"
export EC_KAFKA_PKI_DIR="$p"
export EC_KAFKA_CA_FILE="$p/ca.crt"
export EC_KAFKA_ADMIN_USER=admin
export EC_KAFKA_ADMIN_PASSWORD="$(kafka_password EC_KAFKA_ADMIN_PASSWORD)"
export EC_KAFKA_CONSUMER_USER=consumer
export EC_KAFKA_CONSUMER_PASSWORD="$(kafka_password EC_KAFKA_CONSUMER_PASSWORD)"
EOF
}
