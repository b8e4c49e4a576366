#!/usr/bin/env bash
# Deploys Trawl to Google Cloud: Cloud SQL for Postgres and Memorystore for Redis on private
# IPs, the Pub/Sub topics and subscription, the output bucket, least-privilege service
# accounts, the images (Cloud Build or docker push to Artifact Registry), the setup job, the
# orchestrator service and the worker pool. Every step creates what is missing and leaves
# what exists, so running it again is safe (and is how settings and images are updated).
#
#   PROJECT=my-project REGION=europe-west1 deploy/cloudrun/deploy.sh
#
# Every variable below can be set in the environment. README.md (next to this file)
# explains the scaling settings.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"

# --- where -----------------------------------------------------------------------------
PROJECT="${PROJECT:-$(gcloud config get-value project 2>/dev/null || true)}"
REGION="${REGION:-europe-west1}"
NETWORK="${NETWORK:-default}"            # the VPC Cloud Run egresses into (Direct VPC egress)
SUBNET="${SUBNET:-default}"              # a subnet of NETWORK in REGION, /26 or larger
PSA_RANGE="${PSA_RANGE:-trawl-psa}"      # private services access range (Cloud SQL, Redis)

# --- images --------------------------------------------------------------------------------
AR_REPO="${AR_REPO:-trawl}"
IMAGE_TAG="${IMAGE_TAG:-$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || date +%Y%m%d%H%M%S)}"
BUILD_WITH="${BUILD_WITH:-cloudbuild}"   # cloudbuild | docker | none (images already pushed)
PGBOUNCER_IMAGE="${PGBOUNCER_IMAGE:-docker.io/edoburu/pgbouncer:v1.25.1-p0}"
# Beside each process: Google's build of the OpenTelemetry Collector (metrics to Cloud
# Monitoring, spans to Cloud Trace) and the PgBouncer exporter it scrapes (otel-collector.yaml).
OTEL_COLLECTOR_IMAGE="${OTEL_COLLECTOR_IMAGE:-us-docker.pkg.dev/cloud-ops-agents-artifacts/google-cloud-opentelemetry-collector/otelcol-google:0.144.0}"
PGBOUNCER_EXPORTER_IMAGE="${PGBOUNCER_EXPORTER_IMAGE:-quay.io/prometheuscommunity/pgbouncer-exporter:v0.12.1}"

# --- Cloud SQL for PostgreSQL ------------------------------------------------------------------
SQL_INSTANCE="${SQL_INSTANCE:-trawl-pg}"
SQL_TIER="${SQL_TIER:-db-custom-2-7680}"
SQL_AVAILABILITY="${SQL_AVAILABILITY:-zonal}"   # regional: a standby in another zone
SQL_MAX_CONNECTIONS="${SQL_MAX_CONNECTIONS:-400}"
SQL_RESERVED_CONNECTIONS="${SQL_RESERVED_CONNECTIONS:-15}"  # superuser, Cloud SQL, setup
SQL_DATABASE="${SQL_DATABASE:-trawl}"
SQL_USER="${SQL_USER:-trawl}"
# Backups and recovery (docs/operations.md, "Backups and recovery"): a daily automated
# backup starting at SQL_BACKUP_START_TIME (UTC), SQL_BACKUPS_KEPT of them kept, and
# point-in-time recovery from transaction logs kept SQL_PITR_LOG_DAYS days (1..7 on the
# Enterprise edition). Maintenance (a restart of a minute or so) in a weekly window.
SQL_BACKUP_START_TIME="${SQL_BACKUP_START_TIME:-03:00}"
SQL_BACKUPS_KEPT="${SQL_BACKUPS_KEPT:-14}"
SQL_PITR_LOG_DAYS="${SQL_PITR_LOG_DAYS:-7}"
SQL_MAINTENANCE_DAY="${SQL_MAINTENANCE_DAY:-SUN}"   # MON..SUN
SQL_MAINTENANCE_HOUR="${SQL_MAINTENANCE_HOUR:-4}"   # 0..23, UTC

# --- Memorystore for Redis -------------------------------------------------------------------
REDIS_INSTANCE="${REDIS_INSTANCE:-trawl-redis}"
REDIS_TIER="${REDIS_TIER:-standard}"     # standard: a replica and failover; basic: none
REDIS_SIZE_GB="${REDIS_SIZE_GB:-1}"
REDIS_VERSION="${REDIS_VERSION:-redis_7_2}"
REDIS_PREFIX="${REDIS_PREFIX:-trawl}"
SEEN_TTL_S="${SEEN_TTL_S:-604800}"

# --- Pub/Sub: exactly what every Trawl process expects (trawl/settings.py defaults) -----
PUBSUB_TOPIC="${PUBSUB_TOPIC:-trawl-tasks}"
PUBSUB_SUBSCRIPTION="${PUBSUB_SUBSCRIPTION:-trawl-workers}"
PUBSUB_DEAD_LETTER_TOPIC="${PUBSUB_DEAD_LETTER_TOPIC:-trawl-tasks-dead}"
PUBSUB_ACK_DEADLINE_S="${PUBSUB_ACK_DEADLINE_S:-60}"              # TRAWL_PUBSUB_ACK_DEADLINE_S
PUBSUB_RETENTION_S="${PUBSUB_RETENTION_S:-604800}"                # TRAWL_PUBSUB_RETENTION_S
PUBSUB_MAX_DELIVERY_ATTEMPTS="${PUBSUB_MAX_DELIVERY_ATTEMPTS:-20}" # TRAWL_PUBSUB_MAX_DELIVERY_ATTEMPTS

# --- Cloud Storage ---------------------------------------------------------------------------
GCS_BUCKET="${GCS_BUCKET:-${PROJECT}-trawl-outputs}"
GCS_PREFIX="${GCS_PREFIX:-}"

# --- Cloud Run ---------------------------------------------------------------------------------
ORCHESTRATOR_SERVICE="${ORCHESTRATOR_SERVICE:-trawl-orchestrator}"
ORCHESTRATOR_MIN_INSTANCES="${ORCHESTRATOR_MIN_INSTANCES:-1}"
ORCHESTRATOR_MAX_INSTANCES="${ORCHESTRATOR_MAX_INSTANCES:-5}"
ORCHESTRATOR_CONCURRENCY="${ORCHESTRATOR_CONCURRENCY:-80}"        # requests per instance
ORCHESTRATOR_DATABASE_POOL_SIZE="${ORCHESTRATOR_DATABASE_POOL_SIZE:-10}"
WORKER_POOL="${WORKER_POOL:-trawl-worker}"
WORKER_INSTANCES="${WORKER_INSTANCES:-2}"
WORKER_CPU="${WORKER_CPU:-4}"
WORKER_MEMORY="${WORKER_MEMORY:-8Gi}"
WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-32}"                    # TRAWL_WORKER_CONCURRENCY
WORKER_DATABASE_POOL_SIZE="${WORKER_DATABASE_POOL_SIZE:-10}"
PGBOUNCER_POOL_SIZE="${PGBOUNCER_POOL_SIZE:-10}"  # Cloud SQL connections per instance
SETUP_JOB="${SETUP_JOB:-trawl-setup}"
SHUTDOWN_GRACE_S="${SHUTDOWN_GRACE_S:-8}"
MAX_REQUEST_BYTES="${MAX_REQUEST_BYTES:-1048576}"
MAX_RUNNING_EXECUTIONS="${MAX_RUNNING_EXECUTIONS:-10}"
PUBLIC_API="${PUBLIC_API:-true}"   # allUsers may invoke the API (Trawl's API keys guard it)

# --- autoscaling the workers (README.md, "Autoscaling the workers"; docs/operations.md) ------
# AUTOSCALE=true deploys CREMA (Cloud Run External Metrics Autoscaling) on autoscaler.yaml: the
# pool runs WORKER_MIN_INSTANCES to WORKER_MAX_INSTANCES instances, one per
# WORKER_BACKLOG_PER_INSTANCE queued tasks (default: what one worker's Pub/Sub flow control
# holds, 8 x WORKER_CONCURRENCY). false: WORKER_INSTANCES, changed by hand.
AUTOSCALE="${AUTOSCALE:-true}"
WORKER_MIN_INSTANCES="${WORKER_MIN_INSTANCES:-1}"
WORKER_MAX_INSTANCES="${WORKER_MAX_INSTANCES:-20}"
WORKER_BACKLOG_PER_INSTANCE="${WORKER_BACKLOG_PER_INSTANCE:-$(( 8 * WORKER_CONCURRENCY ))}"
AUTOSCALER_POLLING_S="${AUTOSCALER_POLLING_S:-30}"              # how often CREMA reads the metrics
AUTOSCALER_SCALE_DOWN_WINDOW_S="${AUTOSCALER_SCALE_DOWN_WINDOW_S:-300}"  # lower readings this long before scaling down
AUTOSCALER_SERVICE="${AUTOSCALER_SERVICE:-trawl-autoscaler}"
AUTOSCALER_PARAMETER="${AUTOSCALER_PARAMETER:-trawl-autoscaler}"  # Parameter Manager, global
AUTOSCALER_IMAGE="${AUTOSCALER_IMAGE:-us-central1-docker.pkg.dev/cloud-run-oss-images/crema-v1/autoscaler:1.0}"
AUTOSCALER_BASE_IMAGE="${AUTOSCALER_BASE_IMAGE:-us-central1-docker.pkg.dev/serverless-runtimes/google-24/runtimes/java25}"

# --- monitoring: deploy/monitoring's dashboard and alert policies ------------------------------
# Notification channels (resource names, comma-separated) the alert policies notify; empty:
# the policies only show in Cloud Monitoring.
ALERT_NOTIFICATION_CHANNELS="${ALERT_NOTIFICATION_CHANNELS:-}"

# --- identities and secrets ------------------------------------------------------------------
ORCHESTRATOR_SA="${ORCHESTRATOR_SA:-trawl-orchestrator}"
WORKER_SA="${WORKER_SA:-trawl-worker}"
SETUP_SA="${SETUP_SA:-trawl-setup}"
SECRET_DB_PASSWORD="${SECRET_DB_PASSWORD:-trawl-db-password}"
SECRET_DATABASE_URL="${SECRET_DATABASE_URL:-trawl-database-url}"
SECRET_DATABASE_URL_DIRECT="${SECRET_DATABASE_URL_DIRECT:-trawl-database-url-direct}"
SECRET_REDIS_URL="${SECRET_REDIS_URL:-trawl-redis-url}"
SECRET_OTEL_CONFIG="${SECRET_OTEL_CONFIG:-trawl-otel-collector-config}"    # otel-collector.yaml
SECRET_PGBOUNCER_STATS_URL="${SECRET_PGBOUNCER_STATS_URL:-trawl-pgbouncer-stats-url}"
AUTOSCALER_SA="${AUTOSCALER_SA:-trawl-autoscaler}"

# --- derived -----------------------------------------------------------------------------------
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
REGISTRY="${REGION}-docker.pkg.dev/${PROJECT}/${AR_REPO}"
ORCHESTRATOR_IMAGE="${ORCHESTRATOR_IMAGE:-${REGISTRY}/orchestrator:${IMAGE_TAG}}"
WORKER_IMAGE="${WORKER_IMAGE:-${REGISTRY}/worker:${IMAGE_TAG}}"
ORCHESTRATOR_SA_EMAIL="${ORCHESTRATOR_SA}@${PROJECT}.iam.gserviceaccount.com"
WORKER_SA_EMAIL="${WORKER_SA}@${PROJECT}.iam.gserviceaccount.com"
SETUP_SA_EMAIL="${SETUP_SA}@${PROJECT}.iam.gserviceaccount.com"
AUTOSCALER_SA_EMAIL="${AUTOSCALER_SA}@${PROJECT}.iam.gserviceaccount.com"

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'deploy.sh: %s\n' "$*" >&2; exit 1; }
quietly() { "$@" >/dev/null 2>&1; }  # true when the command succeeds (e.g. "describe")
# digest FILE: its SHA-256 in hex.
digest() { if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1; }
# display_name FILE: the top-level "displayName" of a JSON file of deploy/monitoring (the
# first key of each, on a line of its own: tests/unit/test_monitoring_config.py checks it).
display_name() { sed -n 's/^  "displayName": "\(.*\)",$/\1/p' "$1" | head -n 1; }

# render FILE: a copy of FILE in $WORK, each ${...} placeholder replaced by the variable
# of this script it names (an unknown name is an error).
render() {
  local text name value
  text="$(cat "$1")"
  # shellcheck disable=SC2016  # the pattern is a literal ${NAME}
  for name in $(grep -o '\${[A-Za-z_][A-Za-z0-9_]*}' "$1" | sort -u | tr -d '${}'); do
    [ -n "${!name+set}" ] || die "$1 uses \${$name}, which deploy.sh does not set"
    value="${!name}"
    text="${text//"\${$name}"/"$value"}"
  done
  printf '%s\n' "$text" >"$WORK/$(basename "$1")"
  printf '%s\n' "$WORK/$(basename "$1")"
}

# put_secret NAME VALUE: create the secret if missing; add a version if the value changed.
put_secret() {
  local name="$1" value="$2"
  quietly gcloud secrets describe "$name" --project "$PROJECT" ||
    gcloud secrets create "$name" --project "$PROJECT" --replication-policy automatic
  if [ "$(gcloud secrets versions access latest --secret "$name" --project "$PROJECT" 2>/dev/null || true)" != "$value" ]; then
    printf '%s' "$value" | gcloud secrets versions add "$name" --project "$PROJECT" --data-file=-
  fi
}

# grant_secret SECRET SA_EMAIL
grant_secret() {
  gcloud secrets add-iam-policy-binding "$1" --project "$PROJECT" \
    --member "serviceAccount:$2" --role roles/secretmanager.secretAccessor >/dev/null
}

# --- checks before anything is created ---------------------------------------------------------
[ -n "$PROJECT" ] || die "set PROJECT (or: gcloud config set project ...)"
command -v gcloud >/dev/null || die "gcloud is not installed"
(( PUBSUB_ACK_DEADLINE_S >= 10 && PUBSUB_ACK_DEADLINE_S <= 600 )) ||
  die "PUBSUB_ACK_DEADLINE_S must be 10..600 (Pub/Sub's limits)"
(( PUBSUB_MAX_DELIVERY_ATTEMPTS >= 5 && PUBSUB_MAX_DELIVERY_ATTEMPTS <= 100 )) ||
  die "PUBSUB_MAX_DELIVERY_ATTEMPTS must be 5..100 (Pub/Sub's limits)"
(( PUBSUB_RETENTION_S >= 600 && PUBSUB_RETENTION_S <= 604800 )) ||
  die "PUBSUB_RETENTION_S must be 600..604800 (10 minutes to 7 days)"
# Every instance's PgBouncer may open PGBOUNCER_POOL_SIZE connections to Cloud SQL.
[[ "$SQL_BACKUP_START_TIME" =~ ^([01][0-9]|2[0-3]):[0-5][0-9]$ ]] ||
  die "SQL_BACKUP_START_TIME must be HH:MM (UTC), not $SQL_BACKUP_START_TIME"
[[ "$SQL_BACKUPS_KEPT" =~ ^[0-9]+$ ]] &&
  (( 10#$SQL_BACKUPS_KEPT >= 1 && 10#$SQL_BACKUPS_KEPT <= 365 )) ||
  die "SQL_BACKUPS_KEPT must be 1..365 (Cloud SQL's limits)"
[[ "$SQL_PITR_LOG_DAYS" =~ ^[1-7]$ ]] ||
  die "SQL_PITR_LOG_DAYS must be 1..7 (Cloud SQL Enterprise edition's limits)"
[[ "$SQL_MAINTENANCE_DAY" =~ ^(MON|TUE|WED|THU|FRI|SAT|SUN)$ ]] ||
  die "SQL_MAINTENANCE_DAY must be one of MON TUE WED THU FRI SAT SUN, not $SQL_MAINTENANCE_DAY"
[[ "$SQL_MAINTENANCE_HOUR" =~ ^([0-9]|1[0-9]|2[0-3])$ ]] ||
  die "SQL_MAINTENANCE_HOUR must be 0..23 (UTC)"
# The most worker instances there can be: the autoscaler's ceiling, or the fixed count.
(( WORKER_MIN_INSTANCES >= 0 && WORKER_MIN_INSTANCES <= WORKER_MAX_INSTANCES )) ||
  die "WORKER_MIN_INSTANCES ($WORKER_MIN_INSTANCES) must be 0..WORKER_MAX_INSTANCES ($WORKER_MAX_INSTANCES)"
(( WORKER_BACKLOG_PER_INSTANCE >= 1 )) || die "WORKER_BACKLOG_PER_INSTANCE must be at least 1"
(( AUTOSCALER_POLLING_S >= 10 )) || die "AUTOSCALER_POLLING_S must be at least 10 (seconds)"
max_workers=$(( WORKER_MAX_INSTANCES > WORKER_INSTANCES ? WORKER_MAX_INSTANCES : WORKER_INSTANCES ))
connections=$(( (max_workers + ORCHESTRATOR_MAX_INSTANCES) * PGBOUNCER_POOL_SIZE ))
(( connections <= SQL_MAX_CONNECTIONS - SQL_RESERVED_CONNECTIONS )) ||
  die "(max(WORKER_INSTANCES, WORKER_MAX_INSTANCES) + ORCHESTRATOR_MAX_INSTANCES) x PGBOUNCER_POOL_SIZE = $connections" \
    "Cloud SQL connections, more than SQL_MAX_CONNECTIONS - SQL_RESERVED_CONNECTIONS" \
    "($SQL_MAX_CONNECTIONS - $SQL_RESERVED_CONNECTIONS): lower the pool or raise max_connections"

log "project $PROJECT, region $REGION"
PROJECT_NUMBER="$(gcloud projects describe "$PROJECT" --format 'value(projectNumber)')"
PUBSUB_AGENT="service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"

log "enabling APIs"
gcloud services enable --project "$PROJECT" \
  run.googleapis.com artifactregistry.googleapis.com cloudbuild.googleapis.com \
  pubsub.googleapis.com storage.googleapis.com sqladmin.googleapis.com \
  redis.googleapis.com secretmanager.googleapis.com servicenetworking.googleapis.com \
  compute.googleapis.com iam.googleapis.com \
  monitoring.googleapis.com cloudtrace.googleapis.com parametermanager.googleapis.com

# --- network: private services access for Cloud SQL and Memorystore -------------------------
log "private services access ($PSA_RANGE on $NETWORK)"
quietly gcloud compute addresses describe "$PSA_RANGE" --global --project "$PROJECT" ||
  gcloud compute addresses create "$PSA_RANGE" --global --project "$PROJECT" \
    --purpose VPC_PEERING --prefix-length 20 --network "$NETWORK"
peered="$(gcloud services vpc-peerings list --project "$PROJECT" --network "$NETWORK" \
  --service servicenetworking.googleapis.com --format 'value(reservedPeeringRanges)' || true)"
if [ -z "$peered" ]; then
  gcloud services vpc-peerings connect --project "$PROJECT" --network "$NETWORK" \
    --service servicenetworking.googleapis.com --ranges "$PSA_RANGE"
elif ! tr ';,' '\n' <<<"$peered" | grep -qx "$PSA_RANGE"; then
  gcloud services vpc-peerings update --project "$PROJECT" --network "$NETWORK" \
    --service servicenetworking.googleapis.com --ranges "$(tr ';' ',' <<<"$peered"),$PSA_RANGE"
fi

# --- images --------------------------------------------------------------------------------
log "Artifact Registry repository $AR_REPO"
quietly gcloud artifacts repositories describe "$AR_REPO" --project "$PROJECT" --location "$REGION" ||
  gcloud artifacts repositories create "$AR_REPO" --project "$PROJECT" --location "$REGION" \
    --repository-format docker --description "Trawl images"

log "images $ORCHESTRATOR_IMAGE and $WORKER_IMAGE ($BUILD_WITH)"
case "$BUILD_WITH" in
  cloudbuild)
    gcloud builds submit "$REPO_ROOT" --project "$PROJECT" \
      --config "$HERE/cloudbuild.yaml" \
      --substitutions "_ORCHESTRATOR_IMAGE=${ORCHESTRATOR_IMAGE},_WORKER_IMAGE=${WORKER_IMAGE}"
    ;;
  docker)
    gcloud auth configure-docker "${REGION}-docker.pkg.dev" --quiet
    docker build -f "$REPO_ROOT/docker/orchestrator.Dockerfile" -t "$ORCHESTRATOR_IMAGE" "$REPO_ROOT"
    docker build -f "$REPO_ROOT/docker/worker.Dockerfile" -t "$WORKER_IMAGE" "$REPO_ROOT"
    docker push "$ORCHESTRATOR_IMAGE"
    docker push "$WORKER_IMAGE"
    ;;
  none) ;;
  *) die "BUILD_WITH must be cloudbuild, docker or none, not $BUILD_WITH" ;;
esac

# --- service accounts ------------------------------------------------------------------------
log "service accounts"
for sa in "$ORCHESTRATOR_SA" "$WORKER_SA" "$SETUP_SA" "$AUTOSCALER_SA"; do
  quietly gcloud iam service-accounts describe "${sa}@${PROJECT}.iam.gserviceaccount.com" --project "$PROJECT" ||
    gcloud iam service-accounts create "$sa" --project "$PROJECT" --display-name "Trawl ${sa#trawl-}"
done

# --- Cloud SQL --------------------------------------------------------------------------------
log "Cloud SQL instance $SQL_INSTANCE (private IP only, TLS only, backups and PITR)"
sql_protection=(
  --backup-start-time "$SQL_BACKUP_START_TIME"
  --retained-backups-count "$SQL_BACKUPS_KEPT"
  --enable-point-in-time-recovery
  --retained-transaction-log-days "$SQL_PITR_LOG_DAYS"
  --maintenance-window-day "$SQL_MAINTENANCE_DAY"
  --maintenance-window-hour "$SQL_MAINTENANCE_HOUR"
  --deletion-protection
)
if ! quietly gcloud sql instances describe "$SQL_INSTANCE" --project "$PROJECT"; then
  gcloud sql instances create "$SQL_INSTANCE" --project "$PROJECT" --region "$REGION" \
    --database-version POSTGRES_16 --edition enterprise --tier "$SQL_TIER" \
    --availability-type "$SQL_AVAILABILITY" --storage-auto-increase \
    --network "projects/${PROJECT}/global/networks/${NETWORK}" --no-assign-ip \
    --ssl-mode ENCRYPTED_ONLY --database-flags "max_connections=${SQL_MAX_CONNECTIONS}" \
    "${sql_protection[@]}"
else
  # Set again on every run (no change, no restart), except that turning point-in-time
  # recovery on for an instance created without it restarts it once: the processes ride
  # that out (TRAWL_BACKEND_OUTAGE_S), but do it outside busy hours.
  pitr="$(gcloud sql instances describe "$SQL_INSTANCE" --project "$PROJECT" \
    --format 'value(settings.backupConfiguration.pointInTimeRecoveryEnabled)' || true)"
  [ "${pitr,,}" = true ] ||
    log "turning on point-in-time recovery for $SQL_INSTANCE: Cloud SQL restarts it once"
  gcloud sql instances patch "$SQL_INSTANCE" --project "$PROJECT" --quiet "${sql_protection[@]}"
fi
SQL_PRIVATE_IP="$(gcloud sql instances describe "$SQL_INSTANCE" --project "$PROJECT" \
  --format 'value(ipAddresses[0].ipAddress)')"
[ -n "$SQL_PRIVATE_IP" ] || die "Cloud SQL instance $SQL_INSTANCE has no IP address yet"
quietly gcloud sql databases describe "$SQL_DATABASE" --instance "$SQL_INSTANCE" --project "$PROJECT" ||
  gcloud sql databases create "$SQL_DATABASE" --instance "$SQL_INSTANCE" --project "$PROJECT"
# The password lives in Secret Manager; made once (hex: no escaping in URLs).
if quietly gcloud secrets versions access latest --secret "$SECRET_DB_PASSWORD" --project "$PROJECT"; then
  DB_PASSWORD="$(gcloud secrets versions access latest --secret "$SECRET_DB_PASSWORD" --project "$PROJECT")"
else
  DB_PASSWORD="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
fi
put_secret "$SECRET_DB_PASSWORD" "$DB_PASSWORD"
if gcloud sql users list --instance "$SQL_INSTANCE" --project "$PROJECT" --format 'value(name)' | grep -qx "$SQL_USER"; then
  gcloud sql users set-password "$SQL_USER" --instance "$SQL_INSTANCE" --project "$PROJECT" \
    --password "$DB_PASSWORD" >/dev/null
else
  gcloud sql users create "$SQL_USER" --instance "$SQL_INSTANCE" --project "$PROJECT" \
    --password "$DB_PASSWORD"
fi
# The processes reach Postgres through their PgBouncer sidecar; the setup job directly.
put_secret "$SECRET_DATABASE_URL" "postgresql://${SQL_USER}:${DB_PASSWORD}@127.0.0.1:6432/${SQL_DATABASE}"
put_secret "$SECRET_DATABASE_URL_DIRECT" \
  "postgresql://${SQL_USER}:${DB_PASSWORD}@${SQL_PRIVATE_IP}:5432/${SQL_DATABASE}?sslmode=require"

# --- Memorystore for Redis -----------------------------------------------------------------
log "Memorystore instance $REDIS_INSTANCE"
# volatile-lru: when full, Redis drops the least recently used keys (every Trawl key has a
# TTL; the seen-sets of ended executions go first), which costs pages fetched twice and
# never a page: under noeviction a full Redis refuses the writes that claim a page's links
# and the crawls stall until it is resized (docs/operations.md, "Redis full").
if ! quietly gcloud redis instances describe "$REDIS_INSTANCE" --project "$PROJECT" --region "$REGION"; then
  gcloud redis instances create "$REDIS_INSTANCE" --project "$PROJECT" --region "$REGION" \
    --tier "$REDIS_TIER" --size "$REDIS_SIZE_GB" --redis-version "$REDIS_VERSION" \
    --network "projects/${PROJECT}/global/networks/${NETWORK}" \
    --connect-mode private-service-access --enable-auth \
    --redis-config maxmemory-policy=volatile-lru
else
  gcloud redis instances update "$REDIS_INSTANCE" --project "$PROJECT" --region "$REGION" \
    --update-redis-config maxmemory-policy=volatile-lru
fi
REDIS_HOST="$(gcloud redis instances describe "$REDIS_INSTANCE" --project "$PROJECT" --region "$REGION" --format 'value(host)')"
REDIS_PORT="$(gcloud redis instances describe "$REDIS_INSTANCE" --project "$PROJECT" --region "$REGION" --format 'value(port)')"
REDIS_AUTH="$(gcloud redis instances get-auth-string "$REDIS_INSTANCE" --project "$PROJECT" --region "$REGION" --format 'value(authString)')"
put_secret "$SECRET_REDIS_URL" "redis://:${REDIS_AUTH}@${REDIS_HOST}:${REDIS_PORT}/0"

# --- telemetry: the collector's configuration, and the PgBouncer exporter's login ------------
# The exporter reads SHOW POOLS from its instance's PgBouncer admin console, as the database
# user (a stats user there: STATS_USERS in the manifests).
put_secret "$SECRET_OTEL_CONFIG" "$(cat "$HERE/otel-collector.yaml")"
put_secret "$SECRET_PGBOUNCER_STATS_URL" \
  "postgres://${SQL_USER}:${DB_PASSWORD}@127.0.0.1:6432/pgbouncer?sslmode=disable"

# --- Cloud Storage ---------------------------------------------------------------------------
log "bucket gs://$GCS_BUCKET"
quietly gcloud storage buckets describe "gs://$GCS_BUCKET" --project "$PROJECT" ||
  gcloud storage buckets create "gs://$GCS_BUCKET" --project "$PROJECT" --location "$REGION" \
    --uniform-bucket-level-access --public-access-prevention
# What the bucket keeps and for how long (docs/operations.md, "Retention"). The rules
# replace the bucket's own, so a bucket shared with other data (GCS_PREFIX set) is left to
# its owner, who adds matchesPrefix to each rule before applying them.
if [ -z "$GCS_PREFIX" ]; then
  gcloud storage buckets update "gs://$GCS_BUCKET" --project "$PROJECT" \
    --lifecycle-file "$REPO_ROOT/deploy/gcs-lifecycle.json"
else
  log "GCS_PREFIX is set: apply deploy/gcs-lifecycle.json to gs://$GCS_BUCKET yourself, with" \
    "matchesPrefix [\"${GCS_PREFIX%/}/\"] in each rule"
fi

# --- Pub/Sub -------------------------------------------------------------------------------------
log "Pub/Sub $PUBSUB_TOPIC -> $PUBSUB_SUBSCRIPTION (dead letters: $PUBSUB_DEAD_LETTER_TOPIC)"
for topic in "$PUBSUB_TOPIC" "$PUBSUB_DEAD_LETTER_TOPIC"; do
  quietly gcloud pubsub topics describe "$topic" --project "$PROJECT" ||
    gcloud pubsub topics create "$topic" --project "$PROJECT"
done
# Dead letters are kept by a subscription named like their topic (a topic without one drops
# them); `trawl setup` expects exactly that name.
quietly gcloud pubsub subscriptions describe "$PUBSUB_DEAD_LETTER_TOPIC" --project "$PROJECT" ||
  gcloud pubsub subscriptions create "$PUBSUB_DEAD_LETTER_TOPIC" --project "$PROJECT" \
    --topic "$PUBSUB_DEAD_LETTER_TOPIC" --expiration-period never
# The workers' pull subscription: the ack deadline the workers extend leases by, the
# retention, the dead-letter policy, and no expiry when idle.
subscription_settings=(
  --ack-deadline "$PUBSUB_ACK_DEADLINE_S"
  --message-retention-duration "${PUBSUB_RETENTION_S}s"
  --dead-letter-topic "$PUBSUB_DEAD_LETTER_TOPIC"
  --max-delivery-attempts "$PUBSUB_MAX_DELIVERY_ATTEMPTS"
  --expiration-period never
)
if quietly gcloud pubsub subscriptions describe "$PUBSUB_SUBSCRIPTION" --project "$PROJECT"; then
  gcloud pubsub subscriptions update "$PUBSUB_SUBSCRIPTION" --project "$PROJECT" "${subscription_settings[@]}"
else
  gcloud pubsub subscriptions create "$PUBSUB_SUBSCRIPTION" --project "$PROJECT" \
    --topic "$PUBSUB_TOPIC" "${subscription_settings[@]}"
fi

# --- IAM: least privilege, on the resources themselves ---------------------------------------
log "IAM bindings"
topic_role() { gcloud pubsub topics add-iam-policy-binding "$1" --project "$PROJECT" --member "$2" --role "$3" >/dev/null; }
sub_role() { gcloud pubsub subscriptions add-iam-policy-binding "$1" --project "$PROJECT" --member "$2" --role "$3" >/dev/null; }
# Pub/Sub's service agent moves undeliverable messages to the dead-letter topic.
gcloud beta services identity create --service pubsub.googleapis.com --project "$PROJECT" >/dev/null
topic_role "$PUBSUB_DEAD_LETTER_TOPIC" "serviceAccount:$PUBSUB_AGENT" roles/pubsub.publisher
sub_role "$PUBSUB_SUBSCRIPTION" "serviceAccount:$PUBSUB_AGENT" roles/pubsub.subscriber
# Every process checks at start that the topics and subscriptions exist with the expected
# settings (get only: pubsub.viewer on those four resources, nothing project-wide).
for sa in "$ORCHESTRATOR_SA_EMAIL" "$WORKER_SA_EMAIL" "$SETUP_SA_EMAIL"; do
  for topic in "$PUBSUB_TOPIC" "$PUBSUB_DEAD_LETTER_TOPIC"; do
    topic_role "$topic" "serviceAccount:$sa" roles/pubsub.viewer
  done
  for sub in "$PUBSUB_SUBSCRIPTION" "$PUBSUB_DEAD_LETTER_TOPIC"; do
    sub_role "$sub" "serviceAccount:$sa" roles/pubsub.viewer
  done
done
# The orchestrator publishes start URLs; workers publish the links they find and pull.
topic_role "$PUBSUB_TOPIC" "serviceAccount:$ORCHESTRATOR_SA_EMAIL" roles/pubsub.publisher
topic_role "$PUBSUB_TOPIC" "serviceAccount:$WORKER_SA_EMAIL" roles/pubsub.publisher
sub_role "$PUBSUB_SUBSCRIPTION" "serviceAccount:$WORKER_SA_EMAIL" roles/pubsub.subscriber
# Objects in the bucket: workers write part files and exports; the orchestrator reads them
# and writes the export of an execution it cancels. objectUser: objects only, no IAM.
# With GCS_PREFIX set, an IAM condition keeps both accounts inside it: a bucket shared with
# other data (or another Trawl deployment under another prefix) stays out of their reach.
object_condition=()
if [ -n "$GCS_PREFIX" ]; then
  prefix_path="projects/_/buckets/$GCS_BUCKET/objects/${GCS_PREFIX%/}/"
  object_condition=(--condition "title=trawl-prefix,expression=resource.name.startsWith(\"$prefix_path\")")
fi
for sa in "$ORCHESTRATOR_SA_EMAIL" "$WORKER_SA_EMAIL"; do
  gcloud storage buckets add-iam-policy-binding "gs://$GCS_BUCKET" --project "$PROJECT" \
    --member "serviceAccount:$sa" --role roles/storage.objectUser "${object_condition[@]}" >/dev/null
done
# Secrets: the database and Redis URLs (with their passwords).
for sa in "$ORCHESTRATOR_SA_EMAIL" "$WORKER_SA_EMAIL"; do
  grant_secret "$SECRET_DB_PASSWORD" "$sa"
  grant_secret "$SECRET_DATABASE_URL" "$sa"
  grant_secret "$SECRET_REDIS_URL" "$sa"
  grant_secret "$SECRET_OTEL_CONFIG" "$sa"
  grant_secret "$SECRET_PGBOUNCER_STATS_URL" "$sa"
  # The collector sidecar writes metrics and spans (project-wide roles: they have no
  # narrower resource).
  for role in roles/monitoring.metricWriter roles/cloudtrace.agent; do
    gcloud projects add-iam-policy-binding "$PROJECT" --member "serviceAccount:$sa" \
      --role "$role" --condition None >/dev/null
  done
done
grant_secret "$SECRET_DATABASE_URL_DIRECT" "$SETUP_SA_EMAIL"

# --- setup job: migrations, and a check of the Pub/Sub settings ------------------------------
log "setup job $SETUP_JOB"
setup_file="$(render "$HERE/setup.job.yaml")"
gcloud run jobs replace "$setup_file" --project "$PROJECT" --region "$REGION"
gcloud run jobs execute "$SETUP_JOB" --project "$PROJECT" --region "$REGION" --wait

# --- orchestrator service ----------------------------------------------------------------------
log "orchestrator service $ORCHESTRATOR_SERVICE"
orchestrator_file="$(render "$HERE/orchestrator.service.yaml")"
gcloud run services replace "$orchestrator_file" --project "$PROJECT" --region "$REGION"
if [ "$PUBLIC_API" = "true" ]; then
  gcloud run services add-iam-policy-binding "$ORCHESTRATOR_SERVICE" --project "$PROJECT" \
    --region "$REGION" --member allUsers --role roles/run.invoker >/dev/null
fi

# --- worker pool -------------------------------------------------------------------------------
log "worker pool $WORKER_POOL ($WORKER_INSTANCES instances x $WORKER_CONCURRENCY tasks)"
worker_file="$(render "$HERE/worker-pool.yaml")"
gcloud beta run worker-pools replace "$worker_file" --project "$PROJECT" --region "$REGION"

# --- autoscaler: CREMA sets the worker pool's instance count from the backlog --------------
# (Re-running this script sets the pool back to WORKER_INSTANCES; the autoscaler corrects it
# at its next poll, AUTOSCALER_POLLING_S later.)
if [ "$AUTOSCALE" = "true" ]; then
  log "autoscaler $AUTOSCALER_SERVICE: $WORKER_POOL between $WORKER_MIN_INSTANCES and" \
    "$WORKER_MAX_INSTANCES instances, one per $WORKER_BACKLOG_PER_INSTANCE queued tasks"
  autoscaler_file="$(render "$HERE/autoscaler.yaml")"
  # Parameter versions cannot change: one per distinct configuration, named by its digest.
  autoscaler_version="v$(digest "$autoscaler_file" | cut -c1-16)"
  parameter=(--project "$PROJECT" --location global)
  quietly gcloud parametermanager parameters describe "$AUTOSCALER_PARAMETER" "${parameter[@]}" ||
    gcloud parametermanager parameters create "$AUTOSCALER_PARAMETER" "${parameter[@]}" \
      --parameter-format YAML
  quietly gcloud parametermanager parameters versions describe "$autoscaler_version" \
      --parameter "$AUTOSCALER_PARAMETER" "${parameter[@]}" ||
    gcloud parametermanager parameters versions create "$autoscaler_version" \
      --parameter "$AUTOSCALER_PARAMETER" "${parameter[@]}" --payload-data-from-file "$autoscaler_file"
  # Reads its configuration and the metrics; sets the pool's instance count (run.developer on
  # that pool only, and actAs its service account).
  for role in roles/parametermanager.parameterViewer roles/monitoring.viewer; do
    gcloud projects add-iam-policy-binding "$PROJECT" --member "serviceAccount:$AUTOSCALER_SA_EMAIL" \
      --role "$role" --condition None >/dev/null
  done
  gcloud beta run worker-pools add-iam-policy-binding "$WORKER_POOL" --project "$PROJECT" \
    --region "$REGION" --member "serviceAccount:$AUTOSCALER_SA_EMAIL" --role roles/run.developer >/dev/null
  gcloud iam service-accounts add-iam-policy-binding "$WORKER_SA_EMAIL" --project "$PROJECT" \
    --member "serviceAccount:$AUTOSCALER_SA_EMAIL" --role roles/iam.serviceAccountUser >/dev/null
  gcloud run deploy "$AUTOSCALER_SERVICE" --project "$PROJECT" --region "$REGION" \
    --image "$AUTOSCALER_IMAGE" --base-image "$AUTOSCALER_BASE_IMAGE" \
    --service-account "$AUTOSCALER_SA_EMAIL" --no-allow-unauthenticated --no-cpu-throttling \
    --scaling 1 --labels created-by=crema \
    --set-env-vars "CREMA_CONFIG=projects/${PROJECT}/locations/global/parameters/${AUTOSCALER_PARAMETER}/versions/${autoscaler_version},OUTPUT_SCALER_METRICS=False,ENABLE_CLOUD_LOGGING=False"
fi

# --- monitoring: the dashboard and the alert policies (deploy/monitoring) --------------------
# Matched by display name: an existing one is replaced, a missing one created.
log "Cloud Monitoring dashboard and alert policies"
dashboard_file="$(render "$REPO_ROOT/deploy/monitoring/dashboard.json")"
dashboard="$(gcloud monitoring dashboards list --project "$PROJECT" \
  --filter "displayName=\"$(display_name "$dashboard_file")\"" --format 'value(name)' | head -n 1)"
if [ -n "$dashboard" ]; then
  gcloud monitoring dashboards update "$dashboard" --project "$PROJECT" \
    --config-from-file "$dashboard_file" >/dev/null
else
  gcloud monitoring dashboards create --project "$PROJECT" --config-from-file "$dashboard_file" >/dev/null
fi
for source in "$REPO_ROOT"/deploy/monitoring/alerts/*.json; do
  policy_file="$(render "$source")"
  policy="$(gcloud monitoring policies list --project "$PROJECT" \
    --filter "displayName=\"$(display_name "$policy_file")\"" --format 'value(name)' | head -n 1)"
  if [ -n "$policy" ]; then
    channels=()
    [ -z "$ALERT_NOTIFICATION_CHANNELS" ] ||
      channels=(--set-notification-channels "$ALERT_NOTIFICATION_CHANNELS")
    gcloud monitoring policies update "$policy" --project "$PROJECT" \
      --policy-from-file "$policy_file" "${channels[@]}" >/dev/null
  else
    channels=()
    [ -z "$ALERT_NOTIFICATION_CHANNELS" ] ||
      channels=(--notification-channels "$ALERT_NOTIFICATION_CHANNELS")
    gcloud monitoring policies create --project "$PROJECT" --policy-from-file "$policy_file" \
      "${channels[@]}" >/dev/null
  fi
done

URL="$(gcloud run services describe "$ORCHESTRATOR_SERVICE" --project "$PROJECT" --region "$REGION" --format 'value(status.url)')"
log "done: $URL"
cat >&2 <<EOF
Next: an API key for a tenant (README.md, "API keys"), e.g. as a one-off run of the job:
  gcloud run jobs execute $SETUP_JOB --project $PROJECT --region $REGION --wait \\
    --args=keys,create,--tenant,NAME
Scale the workers by hand (no new revision; with AUTOSCALE=true the autoscaler overrides it):
  gcloud beta run worker-pools update $WORKER_POOL --project $PROJECT --region $REGION --scaling N
EOF
