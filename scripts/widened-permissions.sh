#!/usr/bin/env bash
# Proves that the break-in tests (e2e/tests/security.rs) guard the permissions: runs them on a
# copy of nats/ whose auth.conf grants more than it should, and expects each of them to fail.
#
#   registration  may publish patient.>                    (not only patient.register)
#   treatment     may publish patient.register, any heartbeat, any control command and all
#                 of $JS.API.> (another's consumer paused among it), read
#                 every inbox, and
#                 take any request on opd.> and $SRV.> (another service's, in any queue group)
#   inspection    may create (and so update) its own durable consumer, publish on a subject
#                 only its consumer would read, publish into any inbox and ask opd.where
#   board         may write any key of its bucket, and publish events
#   clinic link   may send events and requests into the cluster, hear its events, and
#                 connect as a client
#   legacy link   may send anything into the cluster and hear the services' traffic
#
# Each widening must be caught by the test named beside it; the tests unrelated to permissions
# (identity, TLS) must still pass. Run by scripts/test.sh after the cargo tests; needs what they
# need (OPD_TEST_DATABASE_URL, nats-server).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

copy="$(mktemp -d)"
trap 'rm -rf "$copy"' EXIT
cp nats/*.conf "$copy/"
python3 - "$copy/auth.conf" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
def widen(old, new):
    global text
    if old not in text:
        sys.exit(f"widened-permissions: {old!r} is no longer in auth.conf; update this script")
    text = text.replace(old, new, 1)
widen('"patient.register"\n      "$JS.API.STREAM.INFO.PATIENT"\n      "opd.where"',
      '"patient.>"\n      "$JS.API.STREAM.INFO.PATIENT"\n      "opd.where"')
widen('"patient.release"\n      "$JS.API.STREAM.INFO.PATIENT"',
      '"patient.release"\n      "patient.register"\n      "opd.heartbeat.>"\n      "opd.control.>"\n      "$JS.API.>"')
widen('"_INBOX.treatment.>"', '"_INBOX.>", "opd.>", "$SRV.>"')
widen('"$JS.API.CONSUMER.INFO.PATIENT.inspection-patient-register"',
      '"$JS.API.CONSUMER.INFO.PATIENT.inspection-patient-register"\n'
      '      "$JS.API.CONSUMER.CREATE.PATIENT.inspection-patient-register.>"\n'
      '      "patient.retry.inspection-patient-register"\n'
      '      "_INBOX.>"\n'
      '      "opd.where"')
widen('"$KV.OPD_BOARD.visit.*", "$JS.API.DIRECT.GET', '"$KV.OPD_BOARD.>", "patient.>", "$JS.API.DIRECT.GET')
widen('"$JS.API.CONSUMER.MSG.NEXT.KV_OPD_BOARD.*"', '"$JS.API.CONSUMER.MSG.NEXT.>"')
widen('publish: { allow: ["$JSC.R.*", "opd.site.clinic.>"] }',
      'publish: { allow: ["$JSC.R.*", "opd.site.clinic.>", "patient.>", "opd.>"] }')
widen('"$JS.FC.PATIENT.>", "$JS.FC.clinic.*.PATIENT.>"',
      '"$JS.FC.PATIENT.>", "$JS.FC.clinic.*.PATIENT.>", "patient.>"')
widen('permissions: $CLINIC_LINK, allowed_connection_types: ["LEAFNODE"]', 'permissions: $CLINIC_LINK')
widen('publish: { deny: [">"] }', 'publish: { allow: [">"] }')
widen('"patient.release", "patient.admission"] }', '"patient.release", "patient.admission", ">"] }')
open(path, "w").write(text)
PY

log "the break-in tests against widened permissions (each must fail)"
output="$copy/test.log"
OPD_NATS_CONFIG_DIR="$copy" cargo test --all-features -p opd-e2e --test security 2>&1 \
    | tee "$output" | grep -E '^test |^test result' || true

passed=0 failed=0
expect() { # expect TEST failed|passed
    if grep -qE "^test $1 \.\.\. $( [ "$2" = failed ] && echo FAILED || echo ok )\$" "$output"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); echo "widened-permissions: $1 should have $2" >&2
    fi
}
expect a_service_publishes_its_own_subjects_only failed
expect a_forged_event_from_a_stolen_identity_never_reaches_a_consumer failed
expect a_service_cannot_create_change_purge_or_delete_the_stream failed
expect a_service_cannot_read_another_services_consumer failed
expect a_service_cannot_read_another_services_replies failed
expect a_service_cannot_create_or_change_a_consumer_not_even_its_own failed
expect a_service_cannot_answer_for_another_service failed
expect a_service_answers_only_on_the_reply_subject_it_was_given failed
expect a_service_beats_for_itself_only failed
expect a_service_cannot_send_control_commands failed
expect a_service_cannot_hear_another_services_control_commands failed
expect a_service_pauses_its_own_consumer_only failed
expect the_board_writes_its_own_keys_only_and_nobody_else_writes_or_reads_them failed
expect the_board_pulls_from_its_own_buckets_watch_only failed
expect a_sites_link_carries_its_registrations_and_nothing_else failed
expect the_legacy_leaf_reads_the_books_events_and_writes_nothing failed
expect a_client_without_a_known_identity_is_refused passed
expect plain_text_is_refused_on_the_client_port passed
expect a_node_without_the_clusters_certificate_cannot_join_it passed
expect a_services_certificate_opens_no_route passed
expect an_event_that_says_it_comes_from_another_producer_is_parked passed
expect mutual_tls_asks_every_client_for_a_certificate passed
echo "widened-permissions: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
