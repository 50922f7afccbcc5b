/* SPDX-License-Identifier: MIT */
/*
 * test-auth.c - auth.c without a server: parsing the auth section (every refusal names
 * its key), the access decision for each verdict, protected mode, loopback detection and
 * a refused set leaving the installed one in force.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include <jansson.h>

#include "auth.h"
#include "t.h"

static int configure(const char *json, char *err, size_t errlen)
{
    json_error_t je;
    json_t *v = json_loads(json, 0, &je);
    if (v == NULL)
        return -999;
    int rc = l3_auth_configure(v, err, errlen);
    json_decref(v);
    return rc;
}

#define TOKA "token-a-0123456789abcdef"
#define TOKB "token-b-0123456789abcdef"

static l3_auth_verdict_t decide(unsigned need, const char *authz, bool lo, unsigned *scopes)
{
    const char *who;
    unsigned s;
    l3_auth_verdict_t v =
        l3_auth_decide(need, authz, authz ? strlen(authz) : 0, NULL, lo, &who, scopes ? scopes : &s);
    return v;
}

static void test_protected_mode(void)
{
    l3_auth_reset();
    unsigned s = 0;
    CHECK_EQ_INT(decide(L3_SCOPE_WRITE, NULL, true, &s), L3_AUTH_OK);
    CHECK_EQ_INT(s, L3_SCOPE_ALL);
    CHECK_EQ_INT(decide(L3_SCOPE_HEALTH, NULL, false, NULL), L3_AUTH_PROTECTED);
    char err[256];
    CHECK_EQ_INT(configure("{\"protected_mode\": false}", err, sizeof(err)), 0);
    CHECK_EQ_INT(decide(L3_SCOPE_ADMIN, NULL, false, NULL), L3_AUTH_OK);
    l3_auth_reset();
}

static void test_decisions(void)
{
    char err[256];
    CHECK_EQ_INT(configure("{\"tokens\":[{\"name\":\"a\",\"token\":\"" TOKA "\",\"scopes\":[\"read\"]},"
                           "{\"name\":\"b\",\"token\":\"" TOKB "\",\"scopes\":[\"write\",\"admin\"]}]}",
                           err, sizeof(err)),
                 0);
    unsigned s = 0;
    CHECK_EQ_INT(decide(L3_SCOPE_HEALTH, NULL, false, &s), L3_AUTH_OK); /* default anonymous */
    CHECK_EQ_INT(s, L3_SCOPE_HEALTH);
    CHECK_EQ_INT(decide(L3_SCOPE_READ, NULL, true, NULL), L3_AUTH_UNAUTHORIZED); /* loopback too */
    CHECK_EQ_INT(decide(L3_SCOPE_READ, "Bearer " TOKA, false, &s), L3_AUTH_OK);
    CHECK_EQ_INT(s, L3_SCOPE_READ | L3_SCOPE_HEALTH);
    CHECK_EQ_INT(decide(L3_SCOPE_READ, "bEaReR   " TOKA "  ", false, NULL), L3_AUTH_OK);
    CHECK_EQ_INT(decide(L3_SCOPE_WRITE, "Bearer " TOKA, false, NULL), L3_AUTH_FORBIDDEN);
    CHECK_EQ_INT(decide(L3_SCOPE_ADMIN, "Bearer " TOKB, false, NULL), L3_AUTH_OK);
    CHECK_EQ_INT(decide(L3_SCOPE_READ, "Bearer " TOKA "x", false, NULL), L3_AUTH_UNAUTHORIZED);
    CHECK_EQ_INT(decide(L3_SCOPE_READ, "Basic " TOKA, false, NULL), L3_AUTH_UNAUTHORIZED);
    CHECK_EQ_INT(decide(L3_SCOPE_READ, "Bearer", false, NULL), L3_AUTH_UNAUTHORIZED);
    CHECK_EQ_INT(decide(0, "Bearer nope-nope-nope-nope", false, NULL), L3_AUTH_UNAUTHORIZED);
    CHECK_EQ_INT(decide(0, NULL, false, NULL), L3_AUTH_OK);
    /* a refused set keeps the installed one */
    CHECK(configure("{\"tokens\":[{\"name\":\"c\",\"token\":\"short\",\"scopes\":[\"read\"]}]}", err,
                    sizeof(err)) < 0);
    CHECK(strstr(err, "auth.tokens[0].token") != NULL);
    CHECK_EQ_INT(decide(L3_SCOPE_READ, "Bearer " TOKA, false, NULL), L3_AUTH_OK);
    l3_auth_reset();
}

#define ALICE "CN=alice,O=Example"

static l3_auth_verdict_t decide_cert(unsigned need, const char *authz, const char *subject, const char **who)
{
    unsigned s;
    return l3_auth_decide(need, authz, authz ? strlen(authz) : 0, subject, false, who, &s);
}

static void test_cert_subjects(void)
{
    char err[256];
    l3_auth_reset();
    CHECK_EQ_INT(configure("{\"tokens\":[{\"name\":\"a\",\"token\":\"" TOKA "\",\"scopes\":[\"read\"]},"
                           "{\"name\":\"alice\",\"cert_subject\":\"" ALICE "\",\"scopes\":[\"write\"]},"
                           "{\"name\":\"both\",\"token\":\"" TOKB "\",\"cert_subject\":\"CN=b\","
                           "\"scopes\":[\"admin\"]}]}",
                           err, sizeof(err)),
                 0);
    CHECK_EQ_INT(l3_auth_subject_entry(), 1);
    const char *who = NULL;
    CHECK_EQ_INT(decide_cert(L3_SCOPE_WRITE, NULL, ALICE, &who), L3_AUTH_OK);
    CHECK_EQ_STR(who, "alice");
    CHECK_EQ_INT(decide_cert(L3_SCOPE_READ, NULL, ALICE, &who), L3_AUTH_FORBIDDEN);
    CHECK_EQ_INT(decide_cert(L3_SCOPE_WRITE, NULL, "CN=alice,O=Example2", &who), L3_AUTH_UNAUTHORIZED);
    CHECK_EQ_INT(decide_cert(L3_SCOPE_WRITE, NULL, "cn=alice,o=example", &who), L3_AUTH_UNAUTHORIZED);
    CHECK_EQ_INT(decide_cert(L3_SCOPE_WRITE, NULL, NULL, &who), L3_AUTH_UNAUTHORIZED);
    CHECK_EQ_INT(decide_cert(L3_SCOPE_ADMIN, NULL, "CN=b", &who), L3_AUTH_OK); /* either credential */
    CHECK_EQ_INT(decide_cert(L3_SCOPE_ADMIN, "Bearer " TOKB, NULL, &who), L3_AUTH_OK);
    /* a sent token decides, whatever the certificate */
    CHECK_EQ_INT(decide_cert(L3_SCOPE_WRITE, "Bearer " TOKA, ALICE, &who), L3_AUTH_FORBIDDEN);
    CHECK_EQ_INT(decide_cert(L3_SCOPE_WRITE, "Bearer wrong-wrong-wrong-wrong", ALICE, &who),
                 L3_AUTH_UNAUTHORIZED);
    /* without a client CA (as SIGHUP sees it) a cert_subject entry is refused, the set stays */
    l3_auth_set_client_ca(false);
    CHECK(configure("{\"tokens\":[{\"name\":\"x\",\"cert_subject\":\"CN=x\",\"scopes\":[\"read\"]}]}", err,
                    sizeof(err)) < 0);
    CHECK(strstr(err, "auth.tokens[0].cert_subject") != NULL);
    CHECK_EQ_INT(decide_cert(L3_SCOPE_WRITE, NULL, ALICE, &who), L3_AUTH_OK);
    l3_auth_reset();
    static const char *const bad[] = {
        "{\"tokens\":[{\"name\":\"x\",\"cert_subject\":\"/CN=x\",\"scopes\":[\"read\"]}]}",
        "{\"tokens\":[{\"name\":\"x\",\"cert_subject\":\"\",\"scopes\":[\"read\"]}]}",
        "{\"tokens\":[{\"name\":\"x\",\"cert_subject\":7,\"scopes\":[\"read\"]}]}",
        "{\"tokens\":[{\"name\":\"x\",\"cert_subject\":\"CN=x\",\"scopes\":[\"read\"]},"
        "{\"name\":\"y\",\"cert_subject\":\"CN=x\",\"scopes\":[\"read\"]}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(configure(bad[i], err, sizeof(err)) < 0);
        CHECK(strstr(err, "cert_subject") != NULL);
    }
    l3_auth_reset();
}

static void test_refusals(void)
{
    static const struct {
        const char *json, *key;
    } bad[] = {
        {"{\"tokens\":[{\"name\":\"a\",\"token\":\"" TOKA "\",\"scopes\":[\"nope\"]}]}",
         "auth.tokens[0].scopes"},
        {"{\"tokens\":[{\"name\":\"a\",\"token\":\"" TOKA "\",\"scopes\":[]}]}", "auth.tokens[0].scopes"},
        {"{\"tokens\":[{\"name\":\"a\",\"token\":\"" TOKA " x\",\"scopes\":[\"read\"]}]}",
         "auth.tokens[0].token"},
        {"{\"tokens\":[{\"name\":\"a\",\"token_sha256\":\"zz\",\"scopes\":[\"read\"]}]}",
         "auth.tokens[0].token_sha256"},
        {"{\"tokens\":[{\"name\":\"a\",\"token_file\":\"/nonexistent/t\",\"scopes\":[\"read\"]}]}",
         "auth.tokens[0].token_file"},
        {"{\"tokens\":[{\"name\":\"a\",\"token\":\"" TOKA "\",\"scopes\":[\"read\"]},"
         "{\"name\":\"b\",\"token\":\"" TOKA "\",\"scopes\":[\"read\"]}]}",
         "auth.tokens[1]"},
        {"{\"tokens\":{}}", "auth.tokens"},
        {"{\"anonymous\":[1]}", "auth.anonymous"},
        {"{\"x\":1}", "auth.x"},
        {"[]", "auth"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        CHECK(configure(bad[i].json, err, sizeof(err)) < 0);
        CHECK(strstr(err, bad[i].key) != NULL);
    }
    l3_auth_reset();
}

static void test_loopback(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.9.8.7", &a.sin_addr);
    CHECK(l3_auth_is_loopback(&a));
    inet_pton(AF_INET, "10.0.0.1", &a.sin_addr);
    CHECK(!l3_auth_is_loopback(&a));
    struct sockaddr_in6 b = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::1", &b.sin6_addr);
    CHECK(l3_auth_is_loopback(&b));
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &b.sin6_addr);
    CHECK(l3_auth_is_loopback(&b));
    inet_pton(AF_INET6, "::ffff:192.0.2.1", &b.sin6_addr);
    CHECK(!l3_auth_is_loopback(&b));
    inet_pton(AF_INET6, "2001:db8::1", &b.sin6_addr);
    CHECK(!l3_auth_is_loopback(&b));
}

int main(void)
{
    test_protected_mode();
    test_decisions();
    test_refusals();
    test_cert_subjects();
    test_loopback();
    return t_done();
}
