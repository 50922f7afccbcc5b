/* SPDX-License-Identifier: MIT */
/*
 * send.c - the last step of every response: headers and one complete body handed to h2o.
 * Below both http.c (the routes' reply helpers) and durable.c (replies sent once their WAL
 * record is durable), so neither needs the other to send.
 */
#include <stdbool.h>
#include <string.h>

#include "errmap.h"
#include "send.h"

void l3_http_add_header(h2o_req_t *req, const h2o_token_t *tok, const char *v, size_t len)
{
    h2o_add_header(&req->pool, &req->res.headers, tok, NULL, v, len);
}

void l3_http_send(h2o_req_t *req, int status, const char *ctype, h2o_iovec_t body, int head)
{
    static h2o_generator_t gen = {NULL, NULL};
    req->res.status = status;
    req->res.reason = l3_srv_reason(status);
    if (status != 204 && status != 304)
        req->res.content_length = body.len;
    if (ctype != NULL)
        l3_http_add_header(req, H2O_TOKEN_CONTENT_TYPE, ctype, strlen(ctype));
    h2o_start_response(req, &gen);
    bool nobody = head || status == 204 || status == 304;
    h2o_send(req, &body, nobody ? 0 : 1, H2O_SEND_STATE_FINAL);
}
