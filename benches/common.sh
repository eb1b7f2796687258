# Shared by the bench scripts (sourced, not run): a scratch directory with
# the processes to stop on exit, ports, tool installation, and the Meta
# event scenario that load.sh and instructions.sh both measure.

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# need COMMAND PACKAGE: installs PACKAGE from the distribution when COMMAND is missing.
need() { command -v "$1" >/dev/null || { echo "installing $2"; apt-get install -y "$2" >/dev/null || sudo apt-get install -y "$2" >/dev/null; }; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_nginx PORT UPSTREAM_PORT: nginx `proxy_pass` on PORT to the upstream,
# with kept-alive upstream connections and no access log (it rewrites
# nothing: the baseline the proxy benches compare scrim with). Its master's
# pid in `nginx_pid`.
start_nginx() {
  cat > "$work/nginx.conf" <<NGINX
worker_processes auto;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  upstream platform { server 127.0.0.1:$2; keepalive 64; }
  server {
    listen 127.0.0.1:$1;
    location / {
      proxy_pass http://platform;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
  nginx -c "$work/nginx.conf" & nginx_pid=$!; pids+=($nginx_pid)
}

# meta_config FILE SCRIM_PORT ADMIN_PORT UPSTREAM_PORT: a route hashing 6
# user_data fields of Meta events, to the in-repo upstream.
meta_config() {
  cat > "$1" <<YAML
listen: 127.0.0.1:$2
admin: {listen: 127.0.0.1:$3}
routes:
  - name: meta
    match: {path_prefix: /}
    upstream: http://127.0.0.1:$4
    rules:
      - {select: "\$.data[*].user_data.em", action: hash, normalize: email}
      - {select: "\$.data[*].user_data.ph", action: hash, normalize: phone, default_region: US, phone_format: digits}
      - {select: "\$.data[*].user_data.fn", action: hash, normalize: name}
      - {select: "\$.data[*].user_data.ln", action: hash, normalize: name}
      - {select: "\$.data[*].user_data.zp", action: hash, normalize: zip}
      - {select: "\$.data[*].user_data.external_id", action: hash, normalize: external_id}
YAML
}

# meta_event FILE LUA: a 1 KiB Meta Conversions API event with 6 fields to
# hash, and a wrk script that posts it (pausing PACE_MS between requests).
meta_event() {
  python3 - "$1" <<'PY'
import json, sys
event = {"event_name": "Purchase", "event_time": 1764400000, "action_source": "website",
         "event_source_url": "https://bakery.example/checkout?step=3",
         "user_data": {"em": "Customer.42@Example.com", "ph": "(650) 555-1212", "fn": "Zoë", "ln": "O'Brien",
                       "zp": "94025-1234", "external_id": "cust-00042",
                       "client_ip_address": "203.0.113.77", "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
         "custom_data": {"currency": "usd", "value": 12.5, "contents": []}}
body = {"data": [event]}
while len(json.dumps(body)) < 1000:
    event["custom_data"]["contents"].append({"id": "sku-%05d" % len(event["custom_data"]["contents"]), "quantity": 1})
open(sys.argv[1], "w").write(json.dumps(body))
PY
  cat > "$2" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$1", "r"); wrk.body = f:read("*a"); f:close()
local pace = tonumber(os.getenv("PACE_MS") or "0")
function delay() return pace end
LUA
}

# The admin token of routes_config's configurations (POST /reload needs it).
export SCRIM_BENCH_ADMIN=bench-admin-token-0123456789

# routes_config FILE PORT ADMIN_PORT COUNT: COUNT routes to the upstream on
# $upstream_port, half of them by host, the Meta route (meta_config's rules,
# under /v21.0) in the middle.
routes_config() {
  meta_config "$work/meta.yaml" "$2" "$3" "$upstream_port"
  python3 - "$1" "$4" "$work/meta.yaml" "$upstream_port" <<'PY'
import sys
out, count, meta, upstream = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read(), sys.argv[4]
head, routes = meta.split("routes:\n")
meta_route = routes.replace("path_prefix: /", "path_prefix: /v21.0", 1)
lines = [head.replace("admin: {", "keys: {admin: \"${SCRIM_BENCH_ADMIN}\"}\nadmin: {"), "routes:\n"]
for i in range(count - 1):
    if i == (count - 1) // 2:
        lines.append(meta_route)
    host = f", host: shop{i}.example" if i % 2 else ""
    lines.append(f"  - name: r{i}\n    match: {{path_prefix: /r{i}/api{host}}}\n    upstream: http://127.0.0.1:{upstream}\n"
                 f"    rules:\n      - {{select: \"$.data[*].email\", action: hash, normalize: email}}\n")
open(out, "w").write("".join(lines))
PY
}

# ga4_route FILE UPSTREAM_PORT: appends to a configuration a `ga4_web`
# route under /g/ (the browser analytics preset, for load.sh's GA4 row).
ga4_route() {
  cat >> "$1" <<YAML
  - name: ga4
    match: {path_prefix: /g/}
    upstream: http://127.0.0.1:$2
    preset: ga4_web
    site: [bakery.example]
YAML
}

# vault_routes FILE UPSTREAM_PORT VAULT_FILE: adds the vault's key and
# store to a configuration, and two routes for the Meta event's 6 fields:
# /hmac/ (`hmac`) and /tokenize/ (`tokenize`, the embedded store).
vault_routes() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys
path, upstream, vault = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read()
head, routes = text.split("routes:\n", 1)
fields = [("em", "email"), ("ph", "phone, default_region: US"), ("fn", "name"), ("ln", "name"), ("zp", "zip"), ("external_id", "external_id")]
def route(action):
    rules = "".join(f'      - {{select: "$.data[*].user_data.{f}", action: {action}, normalize: {n}}}\n' for f, n in fields)
    return f"  - name: {action}\n    match: {{path_prefix: /{action}/}}\n    strip_prefix: true\n    upstream: http://127.0.0.1:{upstream}\n    rules:\n{rules}"
keys = "keys:\n  pseudonym: ${SCRIM_BENCH_KEY}\n  vault: ${SCRIM_BENCH_KEY}\n" + f"vault:\n  path: {vault}\n"
open(path, "w").write(head + keys + "routes:\n" + route("hmac") + route("tokenize") + routes)
PY
}

# plain_route FILE UPSTREAM_PORT: adds a route with no rules at /plain/:
# the same event through scrim's HTTP path alone, nothing rewritten.
plain_route() {
  python3 - "$1" "$2" <<'PY'
import sys
path, upstream = sys.argv[1], sys.argv[2]
head, routes = open(path).read().split("routes:\n", 1)
plain = f"  - name: plain\n    match: {{path_prefix: /plain/}}\n    strip_prefix: true\n    upstream: http://127.0.0.1:{upstream}\n"
open(path, "w").write(head + "routes:\n" + plain + routes)
PY
}

# ga4_hit LUA: a wrk script that sends a gtag.js page_view hit as a
# browser does: GET /g/collect with 30 parameters, and a browser's headers.
ga4_hit() {
  cat > "$1" <<'LUA'
wrk.method = "GET"
wrk.path = "/g/collect?v=2&tid=G-TEST123456&gtm=45je4b20v9115990890za200&_p=1733341234567&gcs=G111&gcd=13l3l3l3l1l1&npa=0&dma=0&cid=1873456721.1733340000&ul=en-us&sr=1512x982&uaa=arm&uab=64&uafvl=Chromium%3B131.0.6778.86%7CGoogle%2520Chrome%3B131.0.6778.86&uamb=0&uap=macOS&uapv=14.6.1&uaw=0&_s=1&sid=1733340012&sct=37&seg=0&dl=https%3A%2F%2Fbakery.example%2Fcheckout%3Femail%3Djane%2540example.com%26utm_source%3Dnewsletter&dr=https%3A%2F%2Fmail.example.net%2Finbox&dt=Checkout&en=page_view&_fv=1&_ss=1&uid=cust-00042&_uip=203.0.113.77"
wrk.headers["User-Agent"] = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.86 Safari/537.36"
wrk.headers["Cookie"] = "_ga=GA1.1.1873456721.1733340000; shop_session=s%3Asess-8f2c1e9a"
wrk.headers["Referer"] = "https://bakery.example/checkout?email=jane%40example.com"
wrk.headers["Accept-Language"] = "en-US,en;q=0.9,de;q=0.8"
LUA
}
