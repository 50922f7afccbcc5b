/* SPDX-License-Identifier: MIT */
/*
 * dashboard.c - the static /dashboard page. Its source is src/obs/dashboard.html, turned
 * into the array `page` (dashboard-page.h) by embed-page.py at build time.
 *
 * The page is self-contained (no external asset, no font, works offline) and dark unless
 * the browser prefers light (a toggle, remembered in localStorage). Its script polls
 * /metrics once a second and shows KPI cards (active connections, requests/s, bytes in/s
 * and out/s, 4xx and 5xx totals and rates, workers live/target, WAL pending bytes and
 * durable lag, arena use, change-feed watchers when /metrics has them), four SVG charts of
 * the last 5 minutes (bytes/s in and out, requests/s by route, write latency p50/p99 from
 * histogram deltas, end-to-end when /metrics has it; workers, measured queue depth and the
 * Kalman prediction) and the tables (system, autoscaler, handlers, stages, WAL, workers,
 * scale decisions). Runs in workers (served from read-only static memory); no state.
 *
 * Invariants (letter B, docs/invariants.md):
 * B1 every string from /metrics reaches the DOM as textContent or an attribute value set
 *    on an element the script creates; the script never assigns innerHTML.
 * B2 rates are counter deltas over performance.now() between two answers; an answer more
 *    than 2.5 s after the previous one (a failed or late poll) or a counter that went down
 *    adds a gap to the charts, not a point.
 * B3 one <style> and one <script> element, no inline style or event attribute (the CSP).
 * B4 element ids the tests read: status, theme, login, token, kpi-conn, kpi-rps, kpi-in, kpi-out,
 *    kpi-4xx, kpi-5xx, kpi-workers, kpi-wal, kpi-arena, kpi-watchers (each card has
 *    data-value, 4xx/5xx also data-rate, WAL data-lag), chart-bytes, chart-rps, chart-lat,
 *    chart (queue; each chart has data-n samples, data-gaps and data-last, the JSON of its
 *    newest values), sys, as-*, routes, stages, wal, workers, decisions; body data-polls.
 *
 * Tokens: when /metrics answers 401 (or 403) the page shows the form "login" and asks
 * for a token, keeps it in sessionStorage (gone when the tab closes) and sends it as
 * "Authorization: Bearer" on every request. The page has exactly one <style> and one
 * <script> element and no inline style or event attributes, so the server's
 * Content-Security-Policy can allow just those two by their SHA-256, computed from the page
 * at run time (route_admin.c).
 */
#include <string.h>

#include "obs.h"

#include "dashboard-page.h"

const char *l3_obs_dashboard_html(size_t *ret_len)
{
    *ret_len = sizeof(page) - 1;
    return page;
}
