#!/bin/bash
# managed by podman-standard (operations/migration.py); local changes are overwritten.
# The on-host steps of the Docker -> Podman migration (container runtime standard §6.1).
# It lives in the rollback bundle and reads the bundle's plan.txt, whose OWNER fields say
# whose podman a volume, image or service goes to: root's, or a rootless user's.
#   export   stop Docker's running containers (recorded in docker-running.txt), archive every
#            named volume and bind mount directory (tar + sha256 + a content digest), keep
#            compose projects' own files, save local-only images, SHA256SUMS
#   move     check SHA256SUMS, load images into each owner's podman, restore each volume into
#            a podman volume of the same name and compare its content digest; for a rootless
#            owner the files are written inside its user namespace (`podman unshare`), so
#            container uid 0 becomes the user and uid N its N-th subordinate id, and the
#            digest is taken there too (owners as its containers see them); copy each bind
#            mount's host directory into its service's directory the same way (the original
#            stays where it is)
#   verify   every re-created service's unit active and its container running
#   retire   the point of no return: docker.socket, docker.service, containerd stopped, disabled
#   docker-ps   `docker ps` (now podman, as each owner) lists every re-created container
#   rollback [podman|bundle]   Docker back (deploys/rollback_to_docker.py); each volume and
#            bind mount directory gets podman's data as it is now (default) or the bundle's
#            (as at the migration)
#   detached STEP [ARG]   STEP (export, move, rollback: the long ones) run as a transient
#            systemd unit, apart from the session that asked for it, so a lost SSH connection
#            neither kills it half-way nor skips its clean-up; this waits for it (bounded) and
#            ends as it ended, its log (logs/STEP.log in the bundle) on stderr. A step that
#            is running already is waited for, not started twice; one the state file shows
#            finished is reported, not run again.
# Until `retire`, any failure puts Docker back as it was: the containers it stopped are started
# again (and in `verify` the podman services are removed first), and the run stops with the
# step that failed. Every step reports on stderr; the state file says where a migration is.
set -euo pipefail
umask 077
BUNDLE=$(cd "$(dirname "$0")" && pwd)
PLAN="$BUNDLE/plan.txt"
RUNNING="$BUNDLE/docker-running.txt"
STATE="$BUNDLE/state"
LABEL=io.podman-standard.migrated-from=docker
LOGS="$BUNDLE/logs"
# The transient unit a detached step runs as, and how long its caller waits for it (bounded:
# a volume of hundreds of GiB takes hours to archive).
UNIT_PREFIX=podman-standard-migration
STEP_TIMEOUT=${PODMAN_STANDARD_STEP_TIMEOUT:-43200}
STEP=start

say() { printf 'migration: %s\n' "$*" >&2; }
items() { awk -v k="$1" '$1 == k { $1 = ""; sub(/^ +/, ""); print }' "$PLAN"; }
state() { printf '%s\n' "$1" >"$STATE"; }
words() { tr '\n' ' ' | sed 's/ $//'; }

# A digest of a directory tree: every entry's type, mode, numeric owner, path and link
# target, then every regular file's sha256; identical trees give identical digests.
content_digest() {
    (
        cd "$1"
        find . -printf '%y %m %U:%G %p -> %l\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum
    ) | sha256sum | cut -d' ' -f1
}

# A command run by OWNER: as is for root; for a rootless user from /, with the runtime
# directory its systemd gives it (it lingers).
as_owner() {
    local owner=$1
    shift
    if [ "$owner" = root ]; then
        "$@"
    else
        (cd / && runuser -u "$owner" -- env XDG_RUNTIME_DIR="/run/user/$(id -u "$owner")" "$@")
    fi
}
pm() {
    local owner=$1
    shift
    as_owner "$owner" podman "$@"
}
# A command inside OWNER's user namespace, where ids are those its containers see.
in_ns() {
    local owner=$1
    shift
    if [ "$owner" = root ]; then "$@"; else as_owner "$owner" podman unshare "$@"; fi
}
digest_as() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    in_ns "$1" bash -c "$(declare -f content_digest)"'; content_digest "$1"' digest "$2"
}
unit_ctl() {
    local owner=$1
    shift
    if [ "$owner" = root ]; then
        systemctl "$@"
    else
        systemctl --user --machine="$owner@.host" "$@"
    fi
}
extract() { tar --extract --file - --numeric-owner --same-owner --same-permissions --xattrs --acls -C "$1"; }

# Docker as it was: start again the containers this migration stopped.
docker_back() {
    if [ -f "$RUNNING" ]; then
        while read -r name; do
            [ -n "$name" ] || continue
            docker start "$name" >/dev/null || say "could not start Docker container $name"
        done <"$RUNNING"
    fi
    state docker-running
    say "Docker is left installed and running with its containers; bundle: $BUNDLE"
}

# Podman services of this migration stopped and removed (their units only; volumes stay).
# plan.txt names each service's unit files (operations/services.py's directories): absolute
# for root's, relative to the home directory for a rootless user's.
services_off() {
    local name owner files file home
    while read -r -u 3 name owner files; do
        unit_ctl "$owner" disable --now "$name.service" >/dev/null 2>&1 ||
            unit_ctl "$owner" stop "$name.service" >/dev/null 2>&1 || true
        home=/
        [ "$owner" = root ] || home=$(getent passwd "$owner" | cut -d: -f6)
        for file in $files; do # (plain paths: checked by the plan)
            rm -f "${home%/}/${file#/}"
        done
        unit_ctl "$owner" daemon-reload || true
        unit_ctl "$owner" reset-failed "$name.service" >/dev/null 2>&1 || true
    done 3< <(items service)
}

# On any failure (set -e), before the point of no return: Docker back as it was. A step's
# exit status is recorded for the session waiting on it (logs/STEP.exit).
on_exit() {
    local code=$1
    if [ -n "${EXIT_FILE:-}" ]; then printf '%s\n' "$code" >"$EXIT_FILE"; fi
    [ "$code" -ne 0 ] || return 0
    say "FAILED at step '$STEP' (exit $code)"
    if [ "${UNDO:-}" = services ]; then services_off; fi
    if [ -n "${UNDO:-}" ]; then docker_back; fi
}
trap 'on_exit $?' EXIT

export_bundle() {
    UNDO=docker
    STEP="stop Docker's running containers"
    # A previous run that stopped them and could not restart them (a lost connection) left
    # its list: keep it, it is the only record of what ran.
    if [ "$(cat "$STATE" 2>/dev/null)" != docker-stopped ]; then
        docker ps --format '{{.Names}}' >"$RUNNING"
        # The plan re-creates what ran at the audit; a container started or stopped since
        # would be lost or duplicated: stop here, before anything is stopped.
        if [ "$(LC_ALL=C sort "$RUNNING")" != "$(items running | LC_ALL=C sort)" ]; then
            say "Docker's running containers changed since the audit ($(words <"$RUNNING")" \
                "now, $(items running | words) then): run the migration again"
            UNDO=
            false
        fi
    fi
    state docker-stopped
    while read -r name; do
        [ -n "$name" ] || continue
        say "stopping Docker container $name for a consistent copy"
        docker stop "$name" >/dev/null
    done <"$RUNNING"
    rm -rf "$BUNDLE/volumes" "$BUNDLE/images" "$BUNDLE/binds" "$BUNDLE/compose"
    mkdir -p "$BUNDLE/volumes" "$BUNDLE/images" "$BUNDLE/binds" "$BUNDLE/compose"
    local name owner mountpoint archive refs container host_path service_dir source
    while read -r -u 3 name owner; do
        STEP="export volume $name"
        mountpoint=$(docker volume inspect --format '{{.Mountpoint}}' "$name")
        tar --create --numeric-owner --xattrs --acls --file "$BUNDLE/volumes/$name.tar" -C "$mountpoint" .
        content_digest "$mountpoint" >"$BUNDLE/volumes/$name.content-sha256"
        say "volume $name: $(du -sb "$mountpoint" | cut -f1) bytes -> volumes/$name.tar"
    done 3< <(items volume)
    while read -r -u 3 container owner archive host_path service_dir source; do
        STEP="export bind mount $host_path of $container"
        tar --create --numeric-owner --xattrs --acls --file "$BUNDLE/$archive" -C "$host_path" .
        content_digest "$host_path" >"$BUNDLE/${archive%.tar}.content-sha256"
        say "bind mount $host_path: $(du -sb "$host_path" | cut -f1) bytes -> $archive"
    done 3< <(items bind)
    local path
    while read -r -u 3 archive path; do
        # A compose project's own file, beside what the bundle renders from inspect.
        STEP="keep compose file $path"
        if [ -f "$path" ]; then
            mkdir -p "$BUNDLE/${archive%/*}"
            cp -- "$path" "$BUNDLE/$archive"
            say "compose file $path -> $archive"
        else
            say "compose file $path is not on this host: not kept (docker-compose.yml has its containers)"
        fi
    done 3< <(items compose-file)
    while read -r -u 3 archive refs; do
        STEP="save image $refs"
        # shellcheck disable=SC2086 # references hold no spaces (checked by the plan)
        docker save --output "$BUNDLE/$archive" $refs
        say "image $refs -> $archive ($(stat -c %s "$BUNDLE/$archive") bytes)"
    done 3< <(items image-save)
    STEP="checksums"
    (
        cd "$BUNDLE"
        find volumes images binds compose -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum
        sha256sum manifest.json plan.txt docker-compose.yml podman-services.json \
            docker-restore.sh migrate.sh
    ) >"$BUNDLE/SHA256SUMS.new"
    mv "$BUNDLE/SHA256SUMS.new" "$BUNDLE/SHA256SUMS"
    state exported
    say "bundle $BUNDLE: $(du -sb "$BUNDLE" | cut -f1) bytes, checksums in SHA256SUMS"
}

move() {
    UNDO=docker
    STEP="check the bundle's checksums"
    (cd "$BUNDLE" && sha256sum --quiet --check SHA256SUMS)
    local owner archive refs id name mountpoint want got
    while read -r -u 3 owner archive refs; do
        STEP="load image $refs into $owner's podman"
        pm "$owner" load --quiet <"$BUNDLE/$archive" >/dev/null
        say "image $refs loaded from $archive into $owner's podman"
    done 3< <(items image-archive)
    while read -r -u 3 owner refs; do
        STEP="copy image $refs from Docker to $owner's podman"
        # shellcheck disable=SC2086
        docker save $refs | pm "$owner" load --quiet >/dev/null
        say "image $refs copied from Docker into $owner's podman"
    done 3< <(items image-stream)
    while read -r -u 3 owner id refs; do
        STEP="name image $id in $owner's podman"
        # shellcheck disable=SC2086
        pm "$owner" tag "${id#sha256:}" $refs </dev/null
    done 3< <(items image-tag)
    while read -r -u 3 name owner; do
        STEP="restore volume $name into $owner's podman"
        if pm "$owner" volume exists "$name" </dev/null; then
            if [ "$(pm "$owner" volume inspect --format '{{index .Labels "io.podman-standard.migrated-from"}}' "$name" </dev/null)" != docker ]; then
                say "a podman volume $name ($owner's) exists already and is not from this migration: left alone"
                false
            fi
            pm "$owner" volume rm --force "$name" </dev/null >/dev/null # an earlier, failed attempt's copy
        fi
        pm "$owner" volume create --label "$LABEL" "$name" </dev/null >/dev/null
        mountpoint=$(pm "$owner" volume inspect --format '{{.Mountpoint}}' "$name" </dev/null)
        in_ns "$owner" tar --extract --file - --numeric-owner --same-owner --same-permissions \
            --xattrs --acls -C "$mountpoint" <"$BUNDLE/volumes/$name.tar"
        STEP="compare volume $name with Docker's"
        want=$(cat "$BUNDLE/volumes/$name.content-sha256")
        got=$(digest_as "$owner" "$mountpoint" </dev/null)
        if [ "$got" != "$want" ]; then
            say "volume $name: content digest $got in $owner's podman, $want from Docker"
            false
        fi
        say "volume $name restored into $owner's podman, content digest $got equals Docker's"
    done 3< <(items volume)
    local container host_path service_dir source target
    while read -r -u 3 container owner archive host_path service_dir source; do
        STEP="copy bind mount $host_path of $container into $service_dir"
        target="$service_dir/$source"
        want=$(cat "$BUNDLE/${archive%.tar}.content-sha256")
        # The service's directory, its owner's (services.service sets its mode and group).
        (umask 022 && mkdir -p "${service_dir%/*}")
        if [ ! -d "$service_dir" ]; then
            mkdir -m 0750 "$service_dir"
            chown "$owner:" "$service_dir"
        fi
        as_owner "$owner" mkdir -p "$target" </dev/null
        if [ -n "$(ls -A "$target")" ]; then
            # An earlier attempt's copy of the same data is kept; anything else is not ours.
            got=$(digest_as "$owner" "$target" </dev/null)
            if [ "$got" != "$want" ]; then
                say "$target holds other data than $host_path: left alone"
                false
            fi
        else
            in_ns "$owner" tar --extract --file - --numeric-owner --same-owner --same-permissions \
                --xattrs --acls -C "$target" <"$BUNDLE/$archive"
            got=$(digest_as "$owner" "$target" </dev/null)
            if [ "$got" != "$want" ]; then
                say "bind mount $host_path: content digest $got in $target, $want on the host"
                false
            fi
        fi
        say "bind mount $host_path copied to $target ($owner's), content digest $got equals the host's"
    done 3< <(items bind)
    state moved
}

verify() {
    UNDO=services
    local name owner deadline
    while read -r -u 3 name owner _; do
        STEP="service $name running under $owner's podman"
        deadline=$((SECONDS + 180))
        until unit_ctl "$owner" is-active --quiet "$name.service" &&
            [ "$(pm "$owner" container inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" = true ]; do
            if [ $SECONDS -ge $deadline ]; then
                unit_ctl "$owner" status --no-pager "$name.service" >&2 || true
                false
            fi
            sleep 2
        done
        say "service $name ($owner): unit active, container running"
    done 3< <(items service)
    state verified
}

retire() {
    STEP="retire Docker"
    # (retired: a run that lost its connection after this point, resumed)
    if ! grep -qxE 'verified|retired' "$STATE" 2>/dev/null; then
        say "the migration is not verified; Docker stays"
        false
    fi
    state retired
    systemctl disable --now docker.socket docker.service containerd.service 2>&1 | grep -v 'does not exist' >&2 || true
    # systemd leaves a stopped socket unit's file behind (RemoveOnStop=no): nothing answers
    # it now, and only one runtime may own the Docker socket (§6.2).
    if [ -S /run/docker.sock ]; then rm -f /run/docker.sock; fi
    say "Docker daemon and containerd stopped and disabled; data kept in /var/lib/docker"
}

docker_ps() {
    STEP="docker ps answered by podman"
    local name owner listed
    docker --version >&2
    while read -r -u 3 name owner _; do
        # Each owner's `docker` (the compatibility layer) lists that owner's containers.
        listed=$(as_owner "$owner" docker ps --format '{{.Names}}' </dev/null)
        grep -qxF -- "$name" <<<"$listed" || { say "docker ps ($owner) does not list $name"; false; }
        say "docker ps ($owner) lists $name"
    done 3< <(items service)
}

# TARGET's content replaced by the tar stream on stdin, whose content digest must be WANT.
# Nothing is deleted before the copy is complete and verified: it is extracted into a
# directory inside TARGET (the same filesystem, so room for one more copy is needed), its
# digest compared; only then are TARGET's old entries removed, the copy's moved in and the
# copy's own top directory's owner, mode, ACLs and xattrs given to TARGET. A copy that does
# not verify is removed and TARGET is left as it was (Docker's old content is in the bundle).
replace_content() {
    local target=$1 want=$2 what=$3 stage got
    stage=$(mktemp -d "$target/.podman-standard-restore.XXXXXX")
    if ! extract "$stage" || ! got=$(content_digest "$stage") || [ "$got" != "$want" ]; then
        rm -rf "$stage"
        say "$what: the copy to restore does not verify (content digest ${got:-unreadable}, $want expected): $target left as it was"
        false
    fi
    find "$target" -mindepth 1 -maxdepth 1 ! -name "${stage##*/}" -exec rm -rf {} +
    find "$stage" -mindepth 1 -maxdepth 1 -exec mv -t "$target" {} +
    tar --create --no-recursion --numeric-owner --xattrs --acls --file - -C "$stage" . | extract "$target"
    rmdir "$stage"
    got=$(content_digest "$target")
    if [ "$got" != "$want" ]; then
        say "$what: content digest $got after the restore, $want expected"
        false
    fi
}

# Docker's volume NAME filled again: from OWNER's podman volume as it is now (SOURCE podman,
# when there is one) or from the bundle (SOURCE bundle, or when neither podman nor Docker has
# it any more); a Docker volume podman no longer has is left as the migration left it. The
# digest of the copy must equal that of what it was copied from.
restore_docker_volume() {
    local name=$1 owner=$2 source=$3 had=yes target from want got what
    docker volume inspect "$name" >/dev/null 2>&1 || had=no
    if [ "$source" = podman ] && pm "$owner" volume exists "$name" </dev/null 2>/dev/null; then
        from=$(pm "$owner" volume inspect --format '{{.Mountpoint}}' "$name" </dev/null)
        what="$owner's podman volume as it is now"
    elif [ "$source" = podman ] && [ "$had" = yes ]; then
        say "volume $name: $owner's podman has no such volume; Docker's copy left as the migration left it"
        return 0
    else
        from=
        what="the bundle (as at the migration)"
    fi
    [ "$had" = yes ] || docker volume create "$name" >/dev/null
    target=$(docker volume inspect --format '{{.Mountpoint}}' "$name")
    if [ -n "$from" ]; then
        want=$(digest_as "$owner" "$from" </dev/null)
        in_ns "$owner" tar --create --file - --numeric-owner --xattrs --acls -C "$from" . </dev/null |
            replace_content "$target" "$want" "volume $name"
    else
        want=$(cat "$BUNDLE/volumes/$name.content-sha256")
        replace_content "$target" "$want" "volume $name" <"$BUNDLE/volumes/$name.tar"
    fi
    say "volume $name restored from $what, content digest $want equal on both sides"
}

# The host directory of a bind mount filled again: from the service's copy as it is now
# (SOURCE podman, when there is one) or from the bundle; digests compared.
restore_bind() {
    local host_path=$1 owner=$2 target=$3 archive=$4 source=$5 want what
    mkdir -p "$host_path"
    if [ "$source" = podman ] && [ -d "$target" ]; then
        want=$(digest_as "$owner" "$target" </dev/null)
        what="the service's copy $target as it is now"
        in_ns "$owner" tar --create --file - --numeric-owner --xattrs --acls -C "$target" . </dev/null |
            replace_content "$host_path" "$want" "bind mount $host_path"
    else
        want=$(cat "$BUNDLE/${archive%.tar}.content-sha256")
        what="the bundle (as at the migration)"
        replace_content "$host_path" "$want" "bind mount $host_path" <"$BUNDLE/$archive"
    fi
    say "bind mount $host_path restored from $what, content digest $want equal on both sides"
}

rollback() {
    local source=${1:-podman}
    case "$source" in podman | bundle) ;; *)
        say "rollback: source must be podman or bundle, not $source"
        false
        ;;
    esac
    STEP="check the bundle's checksums"
    (cd "$BUNDLE" && sha256sum --quiet --check SHA256SUMS)
    systemctl enable --now docker.socket docker.service
    # The migration disabled containerd too; Docker's packages reinstalled keep that state.
    systemctl enable containerd.service 2>/dev/null || true
    # Containers with a restart policy came up with the daemon: nothing may write into the
    # data while it is replaced (those that ran before the migration are started at the end).
    STEP="stop Docker's containers while their data is restored"
    docker ps --quiet | xargs -r docker stop >/dev/null
    local archive refs name owner
    while read -r -u 3 archive refs; do
        STEP="load image $refs into Docker"
        docker load --quiet --input "$BUNDLE/$archive" >/dev/null
    done 3< <(items image-save)
    while read -r -u 3 name owner; do
        STEP="restore Docker volume $name"
        restore_docker_volume "$name" "$owner" "$source"
    done 3< <(items volume)
    local container host_path service_dir bind_source
    while read -r -u 3 container owner archive host_path service_dir bind_source; do
        STEP="restore bind mount $host_path of $container"
        restore_bind "$host_path" "$owner" "$service_dir/$bind_source" "$archive" "$source"
    done 3< <(items bind)
    STEP="re-create Docker's containers"
    bash "$BUNDLE/docker-restore.sh"
    while read -r name; do
        [ -n "$name" ] || continue
        docker start "$name" >/dev/null
    done <"$RUNNING"
    state rolled-back
    say "Docker restored from $BUNDLE (volumes from $source)"
}

# How far a migration got, by the state file: a step whose state (or a later one) is recorded
# finished (docker-stopped: an export under way; docker-running: put back after a failure).
rank() {
    case "$1" in
    exported | export) echo 1 ;;
    moved | move) echo 2 ;;
    verified | verify) echo 3 ;;
    retired | retire) echo 4 ;;
    rolled-back | rollback) echo 9 ;;
    *) echo 0 ;;
    esac
}
finished() {
    local now
    now=$(cat "$STATE" 2>/dev/null || true)
    if [ "$1" = rollback ]; then [ "$now" = rolled-back ]; else
        [ "$now" != rolled-back ] && [ "$(rank "$now")" -ge "$(rank "$1")" ]
    fi
}

# STEP as a transient systemd unit, waited for (see the header).
detached() {
    local step=$1 unit log offset deadline code
    shift
    case "$step" in export | move | rollback) ;; *)
        say "detached: $step is not a long step (export, move, rollback)"
        return 2
        ;;
    esac
    STEP="wait for the detached step $step"
    unit="$UNIT_PREFIX-$step.service"
    log="$LOGS/$step.log"
    mkdir -p "$LOGS"
    if systemctl is-active --quiet "$unit"; then
        say "step $step is running already (unit $unit, started by an earlier session): waiting for it"
        offset=$(cat "$LOGS/$step.offset" 2>/dev/null || echo 0)
    elif finished "$step"; then
        say "step $step finished earlier (state $(cat "$STATE")): not run again"
        return 0
    else
        offset=$(stat -c %s "$log" 2>/dev/null || echo 0)
        echo "$offset" >"$LOGS/$step.offset"
        rm -f "$LOGS/$step.exit"
        # (HOME and PATH as the session has them: the step runs the tools it would run)
        systemd-run --unit="$unit" --collect --quiet --service-type=exec \
            --setenv=EXIT_FILE="$LOGS/$step.exit" --setenv=HOME="${HOME:-/root}" --setenv=PATH="$PATH" \
            --property=StandardOutput="append:$log" --property=StandardError="append:$log" \
            -- /bin/bash "$BUNDLE/migrate.sh" "$step" "$@"
    fi
    deadline=$((SECONDS + STEP_TIMEOUT))
    while systemctl is-active --quiet "$unit"; do
        if [ $SECONDS -ge $deadline ]; then
            say "step $step still running after ${STEP_TIMEOUT}s (unit $unit keeps running; run the deploy again to wait for it); its last log lines:"
            tail -n 20 "$log" >&2
            return 1
        fi
        sleep 1
    done
    tail -c +"$((offset + 1))" "$log" >&2
    code=$(cat "$LOGS/$step.exit" 2>/dev/null || true)
    if [ -z "$code" ]; then
        say "step $step ended without recording how (unit $unit stopped or killed); see $log"
        return 1
    fi
    return "$code"
}

case "${1:-}" in
detached)
    shift
    detached "$@"
    ;;
export) export_bundle ;;
move) move ;;
verify) verify ;;
retire) retire ;;
docker-ps) docker_ps ;;
rollback) rollback "${2:-podman}" ;;
digest) content_digest "$2" ;;
*)
    say "usage: $0 [detached] export|move|verify|retire|docker-ps|rollback [podman|bundle]|digest DIR"
    exit 2
    ;;
esac
