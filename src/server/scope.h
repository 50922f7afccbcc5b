/* SPDX-License-Identifier: MIT */
/*
 * scope.h - does a request hold the scope it needs (auth.tokens, protected mode)?
 */
#ifndef L3KV_SRV_SCOPE_H
#define L3KV_SRV_SCOPE_H

#include <stdbool.h>

#include "http.h"

/** The access decision for scope `need` (L3_SCOPE_*): 0 to go on; 1 when refused, after
 *  answering 401 / 403 when `answer` is set. Fills rq->who and rq->scopes. */
int l3_scope_decide(l3_rq_t *rq, unsigned need, bool answer);

/** Inside a handler: does the request hold scope `need`? 0, or 1 after answering 401 / 403
 *  as the route check would. */
int l3_scope_require(l3_rq_t *rq, unsigned need);

#endif
