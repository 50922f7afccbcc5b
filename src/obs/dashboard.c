/* SPDX-License-Identifier: MIT */
/*
 * dashboard.c - the static /dashboard page: a self-contained HTML page (no external
 * assets) whose script polls /metrics once a second and shows requests/s, handler times
 * per route, the workers, the autoscaler (worker count, both parts of the measured queue
 * depth, Kalman estimate, rate, forecast, a line chart of the last two minutes and the
 * scale decisions with their reasons) and the WAL figures.
 * Runs in workers (served from read-only static memory); no state. Every string taken
 * from /metrics goes through esc() before it reaches innerHTML.
 *
 * Element ids the script fills (the integration test relies on them): status, sys,
 * as-workers, as-target, as-backlog, as-inflight, as-depth, as-estimate, as-rate,
 * as-prediction, as-sd, as-counts, as-last, chart, decisions, routes, workers, wal.
 *
 * Tokens: when /metrics answers 401 (or 403) the page shows the form "login" and asks
 * for a token, keeps it in sessionStorage (gone when the tab closes) and sends it as
 * "Authorization: Bearer" on every request. The page has exactly one <style> and one
 * <script> element and no inline style or event attributes, so the server's
 * Content-Security-Policy can allow just those two by their SHA-256 (route_admin.c).
 */
#include <string.h>

#include "obs.h"

/* clang-format off: the page is kept in lines of its own, not rewrapped */
static const char page[] =
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>l3kv dashboard</title>\n"
    "<style>body{font-family:sans-serif;margin:2em;background:#fafafa}table{border-collapse:collapse;margin-"
    "bottom:1em}"
    "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#eee}"
    "h1{font-size:1.4em}h2{font-size:1.1em}.k{text-align:left}.grid{display:flex;flex-wrap:wrap;gap:2em}"
    "svg{background:#fff;border:1px solid #ccc}.lg span{margin-right:1.5em}.c1{color:#999}.c2{color:#1f77b4}"
    ".c3{color:#d62728}.c4{color:#2ca02c}</style></head>\n<body>\n"
    "<h1>l3kv</h1>\n<p id=\"status\">loading&hellip;</p>\n"
    "<form id=\"login\" hidden><label>access token (monitor scope) <input id=\"token\" type=\"password\" "
    "autocomplete=\"off\"></label> <button type=\"submit\">use token</button></form>\n"
    "<div class=\"grid\"><div><h2>System</h2><table id=\"sys\"></table></div>\n"
    "<div><h2>Autoscaler</h2><table id=\"autoscale\">\n"
    "<tr><th class=k>figure</th><th>value</th></tr>\n"
    "<tr><td class=k>workers (live)</td><td id=\"as-workers\">-</td></tr>\n"
    "<tr><td class=k>target workers</td><td id=\"as-target\">-</td></tr>\n"
    "<tr><td class=k>accept backlog</td><td id=\"as-backlog\">-</td></tr>\n"
    "<tr><td class=k>in-flight requests</td><td id=\"as-inflight\">-</td></tr>\n"
    "<tr><td class=k>measured depth</td><td id=\"as-depth\">-</td></tr>\n"
    "<tr><td class=k>estimate</td><td id=\"as-estimate\">-</td></tr>\n"
    "<tr><td class=k>rate (req/s)</td><td id=\"as-rate\">-</td></tr>\n"
    "<tr><td class=k>prediction</td><td id=\"as-prediction\">-</td></tr>\n"
    "<tr><td class=k>prediction &sigma;</td><td id=\"as-sd\">-</td></tr>\n"
    "<tr><td class=k>ups / downs / invalid</td><td id=\"as-counts\">-</td></tr>\n"
    "<tr><td class=k>last decision</td><td id=\"as-last\" class=k>-</td></tr>\n"
    "</table></div>\n"
    "<div><h2>Queue depth, last 2 minutes</h2>\n"
    "<svg id=\"chart\" width=\"600\" height=\"220\" viewBox=\"0 0 600 220\"></svg>\n"
    "<div class=\"lg\"><span class=\"c1\">&#9632; measured</span><span class=\"c2\">&#9632; "
    "estimate</span><span class=\"c3\">&#9632; prediction</span><span class=\"c4\">&#9632; "
    "capacity (workers &times; capacity)</span></div></div></div>\n"
    "<h2>Scale decisions</h2>\n<table id=\"decisions\"></table>\n"
    "<div class=\"grid\"><div><h2>Handlers</h2><table id=\"routes\"></table></div>\n"
    "<div><h2>WAL</h2><table id=\"wal\"></table></div></div>\n"
    "<h2>Workers</h2>\n<table id=\"workers\"></table>\n"
    "<script>\n"
    "'use strict';\n"
    "let last=null;const hist=[];const HMAX=120;\n"
    "const SS=typeof sessionStorage!=='undefined'?sessionStorage:null;\n"
    "function tok(){return SS?SS.getItem('l3kv-token'):null;}\n"
    "function hdrs(){const t=tok();return t?{'Authorization':'Bearer '+t}:{};}\n"
    "function ask(msg){const f=document.getElementById('login');f.hidden=false;set('status',msg);}\n"
    "(function(){const f=document.getElementById('login');if(!f.addEventListener)return;\n"
    " f.addEventListener('submit',ev=>{ev.preventDefault();const "
    "v=document.getElementById('token').value.trim();\n"
    "  "
    "if(SS&&v)SS.setItem('l3kv-token',v);document.getElementById('token').value='';f.hidden=true;tick();});})"
    "();\n"
    "function esc(v){return "
    "String(v).replace(/[&<>\"']/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','\"':'&quot;',"
    "\"'\":'&#39;'})[c]);}\n"
    "function row(cells,th){return '<tr>'+cells.map((c,i)=>(th?'<th>':(i?'<td>':'<td class=k>'))+esc(c)"
    "+(th?'</th>':'</td>')).join('')+'</tr>';}\n"
    "function us(ns){return (ns/1000).toFixed(2)+' \\u00b5s';}\n"
    "function num(v,d){return (v===null||v===undefined)?'-':Number(v).toFixed(d);}\n"
    "function set(id,v){document.getElementById(id).textContent=v;}\n"
    "function chart(){\n"
    " const W=600,H=220,P=30,svg=document.getElementById('chart');\n"
    " let ymax=1;for(const h of hist){ymax=Math.max(ymax,h.d||0,h.e||0,h.p||0,h.c||0);}\n"
    " ymax=Math.ceil(ymax*1.1);\n"
    " const x=i=>P+(W-P-5)*i/(HMAX-1),y=v=>H-P+(-(H-P-5)*(v||0)/ymax);\n"
    " function line(k,col){return '<polyline fill=\"none\" stroke=\"'+col+'\" stroke-width=\"1.5\" "
    "points=\"'+"
    "hist.map((h,i)=>x(i+HMAX-hist.length).toFixed(1)+','+y(h[k]).toFixed(1)).join(' ')+'\"/>';}\n"
    " let s='<line x1=\"'+P+'\" y1=\"'+(H-P)+'\" x2=\"'+W+'\" y2=\"'+(H-P)+'\" stroke=\"#888\"/>'+"
    "'<line x1=\"'+P+'\" y1=\"0\" x2=\"'+P+'\" y2=\"'+(H-P)+'\" stroke=\"#888\"/>'+"
    "'<text x=\"2\" y=\"12\" font-size=\"10\">'+ymax+'</text><text x=\"2\" y=\"'+(H-P)+'\" "
    "font-size=\"10\">0</text>'+"
    "'<text x=\"'+P+'\" y=\"'+(H-10)+'\" font-size=\"10\">-2 min</text><text x=\"'+(W-30)+'\" "
    "y=\"'+(H-10)+'\" "
    "font-size=\"10\">now</text>';\n"
    " if(hist.length>1){s+=line('c','#2ca02c')+line('d','#999')+line('e','#1f77b4')+line('p','#d62728');}\n"
    " svg.innerHTML=s;\n"
    "}\n"
    "async function tick(){\n"
    " try{const r=await fetch('/metrics',{cache:'no-store',headers:hdrs()});\n"
    "  if(r.status===401){if(SS)SS.removeItem('l3kv-token');ask('a token is needed to read "
    "/metrics');return;}\n"
    "  if(r.status===403){ask('this token lacks the monitor scope');return;}\n"
    "  const m=await r.json();\n"
    "  const t=m.throughput,s=m.system;let rps='-';\n"
    "  if(last){rps=((t.requests_total-last.t.requests_total)/((Date.now()-last.at)/1000)).toFixed(0);}\n"
    "  last={t:t,at:Date.now()};\n"
    "  set('status','version '+s.version+', up '+s.uptime_s.toFixed(0)+' s');\n"
    "  document.getElementById('sys').innerHTML=row(['figure','value'],1)+\n"
    "   [['requests/s',rps],['requests',t.requests_total],['active connections',s.active_connections],\n"
    "    ['worker processes',s.thread_count],['worker restarts',s.worker_restarts_total],\n"
    "    ['in-flight requests',s.inflight_requests],['accept queue',s.accept_queue],\n"
    "    ['bytes received',t.bytes_received_total],['bytes sent',t.bytes_sent_total],\n"
    "    ['4xx',t.http_errors_4xx],['5xx',t.http_errors_5xx]].map(x=>row(x)).join('');\n"
    "  const a=m.autoscale||{};const q=a.queue_depth||{};\n"
    "  set('as-workers',String(s.thread_count));\n"
    "  set('as-target',a.enabled?String(a.target_workers):'off');\n"
    "  set('as-backlog',q.accept_backlog!==undefined?String(q.accept_backlog):String(s.accept_queue));\n"
    "  set('as-inflight',q.inflight!==undefined?String(q.inflight):String(s.inflight_requests));\n"
    "  set('as-depth',num(q.total,1));set('as-estimate',num(a.estimate,2));set('as-rate',num(a.rate,2));\n"
    "  set('as-prediction',num(a.prediction,2));\n"
    "  "
    "set('as-sd',a.prediction_variance==null?'-':Math.sqrt(Math.max(0,a.prediction_variance)).toFixed(2));\n"
    "  set('as-counts',(a.scale_ups_total||0)+' / '+(a.scale_downs_total||0)+' / "
    "'+(a.invalid_samples_total||0));\n"
    "  set('as-last',a.last_decision?a.last_decision.reason:(a.enabled?'-':'autoscaler off'));\n"
    "  hist.push({d:q.total,e:a.estimate,p:a.prediction,c:s.thread_count*(a.worker_capacity||0)});\n"
    "  while(hist.length>HMAX)hist.shift();\n"
    "  chart();\n"
    "  document.getElementById('decisions').innerHTML=row(['time','from','to','measured','estimate',"
    "'prediction','reason'],1)+\n"
    "   (a.decisions||[]).map(d=>row([new Date(d.time_ms).toLocaleTimeString(),d.from,d.to,num(d.measured,1),"
    "num(d.estimate,1),num(d.prediction,1),d.reason])).join('');\n"
    "  document.getElementById('routes').innerHTML=row(['route','count','median','p99','mean'],1)+\n"
    "   "
    "Object.entries(m.handlers).map(([k,v])=>row([k,v.count,us(v.median_ns),us(v.p99_ns),us(v.mean_ns)]))."
    "join('');\n"
    "  const w=m.wal;\n"
    "  document.getElementById('wal').innerHTML=row(['figure','value'],1)+(w?\n"
    "   [['records',w.records_total],['bytes written',w.bytes_written_total],['fsyncs',w.fsyncs_total],\n"
    "    ['pending bytes',w.pending_bytes],['head',w.head],['durable',w.durable],['tail',w.tail],\n"
    "    ['segment',w.segment],['disk bytes',w.disk_bytes],['write errors',w.write_errors_total],\n"
    "    ['fail-stop',w.failstop?'YES':'no'],['writer pid',w.writer_pid]].map(x=>row(x)).join('')"
    ":row(['WAL','off']));\n"
    "  "
    "document.getElementById('workers').innerHTML=row(['slot','pid','state','active','accepted','requests'],"
    "1)+\n"
    "   m.workers.map(w=>row([w.slot,w.pid,w.state,w.active_connections,w.connections_accepted_total,"
    "w.requests_total])).join('');\n"
    " }catch(e){set('status','error: '+e);}\n"
    "}\n"
    "tick();setInterval(tick,1000);\n"
    "</script>\n</body></html>\n";
/* clang-format on */

const char *l3_obs_dashboard_html(size_t *ret_len)
{
    *ret_len = sizeof(page) - 1;
    return page;
}
