# Sourced by the serve scripts: start_server MODEL LOG [moe serve options...] starts
# `moe serve --port 0` in the background and sets SERVER_PID and BASE (http://127.0.0.1:PORT);
# stop_server sends SIGTERM and waits for the exit.
start_server() {
    local model=$1 log=$2
    shift 2
    "$MOE" serve --model "$model" --port 0 "$@" 2>"$log" &
    SERVER_PID=$!
    for _ in $(seq 600); do
        BASE=$(grep -o 'listening on http://[0-9.:]*' "$log" | sed 's/listening on //' || true)
        [ -n "$BASE" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log"; return 1; }
        sleep 0.5
    done
    echo "moe serve printed no address in 300 s" >&2
    return 1
}

stop_server() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID"
}
