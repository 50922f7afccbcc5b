// SPDX-License-Identifier: MIT
// The least DOM the dashboard's script needs to run in node: elements made on demand by
// id, createElement(NS), textContent, dataset, attributes, children. Assigning innerHTML
// throws: the page must never build markup from data. html() serializes an element.
'use strict';
class El {
    constructor(tag, id) {
        this.tag = tag; this.id = id || ''; this.kids = []; this.text = ''; this.attrs = {};
        this.dataset = {}; this.className = ''; this.hidden = id === 'login' || id === 'kpi-watchers';
    }
    set innerHTML(v) { throw new Error('innerHTML assigned on #' + this.id); }
    get innerHTML() { return this.kids.map(html).join('') || esc(this.text); }
    set textContent(v) { this.text = String(v); this.kids = []; }
    get textContent() { return this.text + this.kids.map(k => k.textContent).join(''); }
    setAttribute(k, v) { this.attrs[k] = String(v); }
    getAttribute(k) { return k in this.attrs ? this.attrs[k] : null; }
    appendChild(e) { this.kids.push(e); return e; }
    replaceChildren(...e) { this.text = ''; this.kids = e; }
    querySelector(sel) {  // ".cls" only; the static cards get their spans on first use
        const cls = sel.slice(1);
        let e = this.kids.find(k => k.className === cls);
        if (!e) e = this.appendChild(Object.assign(new El('span'), {className: cls}));
        return e;
    }
}
function esc(s) { return String(s).replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'})[c]); }
function html(e) {
    let a = e.className ? ' class="' + esc(e.className) + '"' : '';
    for (const [k, v] of Object.entries(e.attrs)) a += ' ' + k + '="' + esc(v) + '"';
    return '<' + e.tag + a + '>' + esc(e.text) + e.kids.map(html).join('') + '</' + e.tag + '>';
}
const els = {};
globalThis.document = {
    documentElement: new El('html'), body: new El('body'),
    getElementById(id) { return els[id] || (els[id] = new El('div', id)); },
    createElement(tag) { return new El(tag); },
    createElementNS(ns, tag) { return new El(tag); },
};
module.exports = {els, html};
