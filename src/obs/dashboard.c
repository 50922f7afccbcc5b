/* SPDX-License-Identifier: MIT */
/*
 * dashboard.c - the static /dashboard page: a small HTML page whose script polls
 * /metrics once a second and shows the main figures and per-route handler times.
 * Runs in workers (served from read-only static memory); no state.
 */
#include <string.h>

#include "obs.h"

static const char page[] =
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>l3kv dashboard</title>\n"
    "<style>body{font-family:sans-serif;margin:2em;background:#fafafa}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#eee}"
    "h1{font-size:1.4em}.k{text-align:left}</style></head>\n<body>\n<h1>l3kv</h1>\n"
    "<p id=\"status\">loading&hellip;</p>\n"
    "<table id=\"sys\"></table>\n<h2>Handlers</h2>\n<table id=\"routes\"></table>\n"
    "<h2>Workers</h2>\n<table id=\"workers\"></table>\n"
    "<script>\n"
    "let last=null;\n"
    "function row(cells,th){return '<tr>'+cells.map((c,i)=>(th?'<th>':(i?'<td>':'<td class=k>'))+c"
    "+(th?'</th>':'</td>')).join('')+'</tr>';}\n"
    "function us(ns){return (ns/1000).toFixed(2)+' &micro;s';}\n"
    "async function tick(){\n"
    " try{const r=await fetch('/metrics',{cache:'no-store'});const m=await r.json();\n"
    "  const t=m.throughput,s=m.system;let rps='';\n"
    "  if(last){rps=((t.requests_total-last.t.requests_total)/((Date.now()-last.at)/1000)).toFixed(0);}\n"
    "  last={t:t,at:Date.now()};\n"
    "  document.getElementById('status').textContent='version '+s.version+', up '+s.uptime_s.toFixed(0)+' s';\n"
    "  document.getElementById('sys').innerHTML=row(['figure','value'],1)+\n"
    "   [['requests/s',rps],['requests',t.requests_total],['active connections',s.active_connections],\n"
    "    ['worker processes',s.thread_count],['worker restarts',s.worker_restarts_total],\n"
    "    ['bytes received',t.bytes_received_total],['bytes sent',t.bytes_sent_total],\n"
    "    ['4xx',t.http_errors_4xx],['5xx',t.http_errors_5xx]].map(x=>row(x)).join('');\n"
    "  document.getElementById('routes').innerHTML=row(['route','count','median','p99','mean'],1)+\n"
    "   Object.entries(m.handlers).map(([k,v])=>row([k,v.count,us(v.median_ns),us(v.p99_ns),us(v.mean_ns)])).join('');\n"
    "  document.getElementById('workers').innerHTML=row(['slot','pid','state','active','accepted','requests'],1)+\n"
    "   m.workers.map(w=>row([w.slot,w.pid,w.state,w.active_connections,w.connections_accepted_total,"
    "w.requests_total])).join('');\n"
    " }catch(e){document.getElementById('status').textContent='error: '+e;}\n"
    "}\n"
    "tick();setInterval(tick,1000);\n"
    "</script>\n</body></html>\n";

const char *l3_obs_dashboard_html(size_t *ret_len)
{
    *ret_len = sizeof(page) - 1;
    return page;
}
