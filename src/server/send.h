/* SPDX-License-Identifier: MIT */
/*
 * send.h - hand a finished response to h2o (send.c).
 */
#ifndef L3KV_SRV_SEND_H
#define L3KV_SRV_SEND_H

#include <h2o.h>

/* The media types of the API's bodies. */
#define L3_CT_JSON "application/json"
#define L3_CT_BIN "application/vnd.l3kv.doc"

/** Add a response header (value kept by reference: it must live as long as the request). */
void l3_http_add_header(h2o_req_t *req, const h2o_token_t *tok, const char *v, size_t len);

/** Send a complete response (Content-Length except 204/304; no body for HEAD). No metrics. */
void l3_http_send(h2o_req_t *req, int status, const char *ctype, h2o_iovec_t body, int head);

#endif
