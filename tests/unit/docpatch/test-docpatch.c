/* SPDX-License-Identifier: MIT */
/*
 * test-docpatch.c - JSON Merge Patch (RFC 7396) and JSON Patch (RFC 6902) on documents.
 *
 * Every example of RFC 7396 appendix A and RFC 6902 appendix A, the error paths of
 * l3_doc_json_patch(), number/object semantics of "test", and a randomised comparison of
 * merge patches against a small reference implementation on jansson trees (the oracle).
 * Results are compared with json_equal() (semantics) and, where the order of keys matters,
 * as exact text.
 */
#include <errno.h>
#include <stdbool.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l3kv/base.h"
#include "l3kv/doc.h"
#include "l3kv/error.h"
#include "t.h"

/* ---------------------------------------------------------------- helpers */

static int load_doc(l3_doc_t *d, const char *json)
{
    uint8_t *buf;
    size_t len;
    l3_doc_error_t e;
    int rc = l3_doc_from_json(json, strlen(json), NULL, &buf, &len, &e);
    if (rc < 0) {
        fprintf(stderr, "cannot parse test input %s: %s at %zu\n", json, e.msg, e.offset);
        return rc;
    }
    memset(d, 0, sizeof(*d));
    l3_doc_heap_adopt(d, buf, len);
    return 0;
}

/* The document as JSON text (malloc'd). */
static char *doc_text(const l3_doc_t *d)
{
    l3_buf_t out = {0};
    if (l3_doc_to_json(d->buf, L3_DOC_ROOT, &out) < 0 || l3_buf_reserve(&out, 1) < 0) {
        free(out.ptr);
        return NULL;
    }
    out.ptr[out.len] = '\0';
    return out.ptr;
}

static json_t *jparse(const char *s)
{
    json_error_t je;
    json_t *j = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j)
        fprintf(stderr, "oracle cannot parse %s: %s\n", s, je.text);
    return j;
}

static int same_json(const char *name, const char *got, const char *want)
{
    json_t *a = got ? jparse(got) : NULL, *b = jparse(want);
    int eq = a && b && json_equal(a, b);
    if (!eq)
        fprintf(stderr, "%s: got %s, want %s\n", name, got ? got : "(null)", want);
    json_decref(a);
    json_decref(b);
    return eq;
}

typedef int (*apply_fn)(l3_doc_t *, const char *, size_t, l3_doc_error_t *);

/* Apply a patch to target; returns rc, *ret_text gets the resulting document text. */
static int run(apply_fn fn, const char *target, const char *patch, char **ret_text, l3_doc_error_t *ret_err)
{
    l3_doc_t d;
    l3_doc_error_t e = {0};
    *ret_text = NULL;
    if (load_doc(&d, target) < 0)
        return T_HARNESS_ERROR;
    int rc = fn(&d, patch, strlen(patch), &e);
    *ret_text = doc_text(&d);
    if (ret_err)
        *ret_err = e;
    l3_doc_heap_free(&d);
    return rc;
}

/* A patch that must succeed with the given result. */
static void ok_case(const char *name, apply_fn fn, const char *target, const char *patch, const char *want)
{
    char *got;
    l3_doc_error_t e;
    int rc = run(fn, target, patch, &got, &e);
    if (rc != 0)
        fprintf(stderr, "%s: rc %d (%s) msg %s at %zu\n", name, rc, l3_strerror(rc), e.msg ? e.msg : "-",
                e.offset);
    CHECK_EQ_INT(rc, 0);
    CHECK(same_json(name, got, want));
    free(got);
}

/* Like ok_case, and the text (key order included) must match exactly. */
static void exact_case(const char *name, apply_fn fn, const char *target, const char *patch, const char *want)
{
    char *got;
    int rc = run(fn, target, patch, &got, NULL);
    CHECK_EQ_INT(rc, 0);
    if (!got || strcmp(got, want) != 0)
        fprintf(stderr, "%s: exact text differs\n", name);
    CHECK_EQ_STR(got, want);
    free(got);
}

/* A JSON Patch that must fail with rc; when msg is set, err->msg must contain it. */
static void fail_case(const char *name, const char *target, const char *patch, int want_rc, const char *msg)
{
    char *got;
    l3_doc_error_t e = {0};
    int rc = run(l3_doc_json_patch, target, patch, &got, &e);
    if (rc != want_rc)
        fprintf(stderr, "%s: rc %d (%s), want %d (%s); msg %s\n", name, rc, l3_strerror(rc), want_rc,
                l3_strerror(want_rc), e.msg ? e.msg : "-");
    CHECK_EQ_INT(rc, want_rc);
    CHECK(e.msg != NULL);
    if (msg) {
        if (!e.msg || !strstr(e.msg, msg))
            fprintf(stderr, "%s: msg \"%s\" lacks \"%s\"\n", name, e.msg ? e.msg : "(null)", msg);
        CHECK(e.msg && strstr(e.msg, msg));
    }
    free(got);
}

/* ---------------------------------------------------------------- RFC 7396 */

static void test_merge_rfc7396_appendix_a(void)
{
    static const char *cases[][3] = {
        {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
        {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
        {"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
        {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
        {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
        {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
        {"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
        {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
        {"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
        {"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
        {"{\"a\":\"foo\"}", "null", "null"},
        {"{\"a\":\"foo\"}", "\"bar\"", "\"bar\""},
        {"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"},
        {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
        {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
    };
    for (size_t i = 0; i < L3_ARRAY_SIZE(cases); i++) {
        char name[64];
        snprintf(name, sizeof(name), "merge_rfc7396_A_%zu", i + 1);
        ok_case(name, l3_doc_merge_patch, cases[i][0], cases[i][1], cases[i][2]);
    }
}

static void test_merge_rfc7396_section3_keeps_order(void)
{
    /* The example of RFC 7396 section 3; kept keys stay where they were, new ones go last. */
    exact_case("merge_section3", l3_doc_merge_patch,
               "{\"title\":\"Goodbye!\",\"author\":{\"givenName\":\"John\",\"familyName\":\"Doe\"},"
               "\"tags\":[\"example\",\"sample\"],\"content\":\"This will be unchanged\"}",
               "{\"title\":\"Hello!\",\"phoneNumber\":\"+01-123-456-7890\",\"author\":{\"familyName\":null},"
               "\"tags\":[\"example\"]}",
               "{\"title\":\"Hello!\",\"author\":{\"givenName\":\"John\"},\"tags\":[\"example\"],"
               "\"content\":\"This will be unchanged\",\"phoneNumber\":\"+01-123-456-7890\"}");
}

static void test_merge_escaped_keys(void)
{
    /* Keys with '/' and '~' must be addressed as ~1 and ~0 internally. */
    exact_case("merge_escaped_keys", l3_doc_merge_patch, "{\"a/b\":1,\"m~n\":{\"x\":1},\"~1\":5}",
               "{\"a/b\":2,\"m~n\":{\"y\":2},\"~1\":null,\"/\":{\"~\":null,\"k\":0}}",
               "{\"a/b\":2,\"m~n\":{\"x\":1,\"y\":2},\"/\":{\"k\":0}}");
}

static void test_merge_exact_numbers(void)
{
    exact_case("merge_bignum", l3_doc_merge_patch, "{\"n\":1}",
               "{\"n\":123456789012345678901234567890,\"d\":0.1,\"e\":-0.5}",
               "{\"n\":123456789012345678901234567890,\"d\":0.1,\"e\":-0.5}");
}

static void test_merge_syntax_error(void)
{
    l3_doc_t d;
    if (load_doc(&d, "{\"a\":1}") < 0) {
        t_failures++;
        return;
    }
    l3_doc_error_t e = {0};
    const char *bad = "{\"a\":2,}"; /* trailing comma at byte 6 */
    int rc = l3_doc_merge_patch(&d, bad, strlen(bad), &e);
    CHECK_EQ_INT(rc, L3_ESYNTAX);
    CHECK(e.msg != NULL);
    CHECK(e.offset >= 6 && e.offset <= 7);
    char *txt = doc_text(&d);
    CHECK_EQ_STR(txt, "{\"a\":1}"); /* nothing applied */
    free(txt);
    l3_doc_heap_free(&d);
}

static void test_merge_root_keeps_lsn(void)
{
    l3_doc_t d;
    if (load_doc(&d, "{\"a\":1}") < 0) {
        t_failures++;
        return;
    }
    l3_doc_set_lsn(&d, 4242);
    CHECK_EQ_INT(l3_doc_merge_patch(&d, "[1,2]", 5, NULL), 0);
    CHECK_EQ_INT(l3_doc_lsn(d.buf), 4242);
    CHECK_EQ_INT(l3_doc_verify(d.buf, l3_doc_size(d.buf), NULL), 0);
    CHECK_EQ_INT(l3_doc_merge_patch(&d, "{\"x\":{\"y\":true}}", 16, NULL), 0);
    CHECK_EQ_INT(l3_doc_lsn(d.buf), 4242);
    char *txt = doc_text(&d);
    CHECK_EQ_STR(txt, "{\"x\":{\"y\":true}}");
    free(txt);
    l3_doc_heap_free(&d);
}

static void test_merge_grows_small_buffer(void)
{
    /* Start from the smallest document and add many members: every grow path is taken. */
    l3_doc_t d;
    CHECK_EQ_INT(l3_doc_heap_new(&d, 64), 0);
    CHECK_EQ_INT(l3_doc_init(&d), 0);
    size_t cap = 1 << 18, n = 0;
    char *patch = malloc(cap);
    n += (size_t)snprintf(patch + n, cap - n, "{");
    for (int i = 0; i < 2000; i++)
        n += (size_t)snprintf(patch + n, cap - n, "%s\"k%d\":{\"v\":%d,\"s\":\"%0*d\"}", i ? "," : "", i, i,
                              i % 50, 0);
    n += (size_t)snprintf(patch + n, cap - n, "}");
    CHECK(n < cap);
    CHECK_EQ_INT(l3_doc_merge_patch(&d, patch, n, NULL), 0);
    CHECK_EQ_INT(l3_doc_verify(d.buf, l3_doc_size(d.buf), NULL), 0);
    l3_doc_val_t v;
    CHECK_EQ_INT(l3_doc_get(d.buf, "/k1999/v", 8, L3_DOC_PATH_POINTER, &v), 0);
    CHECK_EQ_INT(v.type, L3_DOC_INT);
    CHECK_EQ_INT(v.i, 1999);
    char *txt = doc_text(&d);
    CHECK(txt && same_json("merge_grows", txt, patch));
    free(txt);
    free(patch);
    l3_doc_heap_free(&d);
}

/* ---------------------------------------------------------------- randomised merge vs jansson */

/* RFC 7396's pseudo code on jansson values (the oracle). Returns a new reference. */
static json_t *ref_merge(json_t *target, json_t *patch)
{
    if (!json_is_object(patch))
        return json_deep_copy(patch);
    json_t *res = json_is_object(target) ? json_deep_copy(target) : json_object();
    const char *k;
    json_t *v;
    json_object_foreach(patch, k, v)
    {
        if (json_is_null(v)) {
            json_object_del(res, k);
        } else {
            json_t *sub = ref_merge(json_object_get(res, k), v);
            json_object_set_new(res, k, sub);
        }
    }
    return res;
}

static json_t *rand_value(uint64_t *st, int depth)
{
    static const char *keys[] = {"a", "b", "c", "d/e", "f~g", ""};
    unsigned r = (unsigned)(t_rand(st) % (depth > 3 ? 6 : 9));
    switch (r) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(t_rand(st) & 1);
    case 2:
        return json_integer((json_int_t)(t_rand(st) % 2000) - 1000);
    case 3:
        return json_real((double)(t_rand(st) % 1000) / 8.0 + 0.0625); /* never integral */
    case 4:
    case 5: {
        char s[16];
        snprintf(s, sizeof(s), "s%u", (unsigned)(t_rand(st) % 100));
        return json_string(s);
    }
    case 6:
    case 7: {
        json_t *o = json_object();
        unsigned n = (unsigned)(t_rand(st) % 5);
        for (unsigned i = 0; i < n; i++)
            json_object_set_new(o, keys[t_rand(st) % L3_ARRAY_SIZE(keys)], rand_value(st, depth + 1));
        return o;
    }
    default: {
        json_t *a = json_array();
        unsigned n = (unsigned)(t_rand(st) % 4);
        for (unsigned i = 0; i < n; i++)
            json_array_append_new(a, rand_value(st, depth + 1));
        return a;
    }
    }
}

static void test_merge_random_vs_jansson(void)
{
    uint64_t st = t_seed();
    int bad = 0;
    for (int iter = 0; iter < 3000 && bad < 5; iter++) {
        json_t *target = rand_value(&st, 0), *patch = rand_value(&st, 0);
        if (t_rand(&st) % 4 != 0) { /* mostly object patches, which are the interesting ones */
            json_decref(patch);
            patch = json_object();
            json_object_set_new(patch, "a", rand_value(&st, 1));
            json_object_set_new(patch, "d/e", rand_value(&st, 1));
            json_object_set_new(patch, "c", json_null());
        }
        char *ts = json_dumps(target, JSON_ENCODE_ANY | JSON_COMPACT);
        char *ps = json_dumps(patch, JSON_ENCODE_ANY | JSON_COMPACT);
        json_t *want = ref_merge(target, patch);
        char *got;
        int rc = run(l3_doc_merge_patch, ts, ps, &got, NULL);
        json_t *gj = got ? jparse(got) : NULL;
        if (rc != 0 || !gj || !json_equal(gj, want)) {
            char *ws = json_dumps(want, JSON_ENCODE_ANY | JSON_COMPACT);
            fprintf(stderr, "merge_random iter %d: target %s patch %s: rc %d got %s want %s\n", iter, ts, ps,
                    rc, got ? got : "(null)", ws);
            free(ws);
            bad++;
        }
        json_decref(gj);
        json_decref(want);
        json_decref(target);
        json_decref(patch);
        free(got);
        free(ts);
        free(ps);
    }
    CHECK_EQ_INT(bad, 0);
}

/* ---------------------------------------------------------------- RFC 6902 appendix A */

#define JP l3_doc_json_patch

static void test_jp_a01_add_object_member(void)
{
    ok_case("jp_A1", JP, "{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\"}]",
            "{\"baz\":\"qux\",\"foo\":\"bar\"}");
}

static void test_jp_a02_add_array_element(void)
{
    exact_case("jp_A2", JP, "{\"foo\":[\"bar\",\"baz\"]}",
               "[{\"op\":\"add\",\"path\":\"/foo/1\",\"value\":\"qux\"}]",
               "{\"foo\":[\"bar\",\"qux\",\"baz\"]}");
}

static void test_jp_a03_remove_object_member(void)
{
    exact_case("jp_A3", JP, "{\"baz\":\"qux\",\"foo\":\"bar\"}", "[{\"op\":\"remove\",\"path\":\"/baz\"}]",
               "{\"foo\":\"bar\"}");
}

static void test_jp_a04_remove_array_element(void)
{
    exact_case("jp_A4", JP, "{\"foo\":[\"bar\",\"qux\",\"baz\"]}",
               "[{\"op\":\"remove\",\"path\":\"/foo/1\"}]", "{\"foo\":[\"bar\",\"baz\"]}");
}

static void test_jp_a05_replace_value(void)
{
    exact_case("jp_A5", JP, "{\"baz\":\"qux\",\"foo\":\"bar\"}",
               "[{\"op\":\"replace\",\"path\":\"/baz\",\"value\":\"boo\"}]",
               "{\"baz\":\"boo\",\"foo\":\"bar\"}");
}

static void test_jp_a06_move_value(void)
{
    exact_case("jp_A6", JP, "{\"foo\":{\"bar\":\"baz\",\"waldo\":\"fred\"},\"qux\":{\"corge\":\"grault\"}}",
               "[{\"op\":\"move\",\"from\":\"/foo/waldo\",\"path\":\"/qux/thud\"}]",
               "{\"foo\":{\"bar\":\"baz\"},\"qux\":{\"corge\":\"grault\",\"thud\":\"fred\"}}");
}

static void test_jp_a07_move_array_element(void)
{
    exact_case("jp_A7", JP, "{\"foo\":[\"all\",\"grass\",\"cows\",\"eat\"]}",
               "[{\"op\":\"move\",\"from\":\"/foo/1\",\"path\":\"/foo/3\"}]",
               "{\"foo\":[\"all\",\"cows\",\"eat\",\"grass\"]}");
}

static void test_jp_a08_test_success(void)
{
    exact_case("jp_A8", JP, "{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}",
               "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"qux\"},{\"op\":\"test\",\"path\":\"/foo/"
               "1\",\"value\":2}]",
               "{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}");
}

static void test_jp_a09_test_error(void)
{
    fail_case("jp_A9", "{\"baz\":\"qux\"}", "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"bar\"}]",
              L3_ETYPE, "test failed");
}

static void test_jp_a10_add_nested_member_object(void)
{
    exact_case("jp_A10", JP, "{\"foo\":\"bar\"}",
               "[{\"op\":\"add\",\"path\":\"/child\",\"value\":{\"grandchild\":{}}}]",
               "{\"foo\":\"bar\",\"child\":{\"grandchild\":{}}}");
}

static void test_jp_a11_ignore_unrecognized_members(void)
{
    exact_case("jp_A11", JP, "{\"foo\":\"bar\"}",
               "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\",\"xyz\":123}]",
               "{\"foo\":\"bar\",\"baz\":\"qux\"}");
}

static void test_jp_a12_add_to_nonexistent_target(void)
{
    fail_case("jp_A12", "{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz/bat\",\"value\":\"qux\"}]",
              L3_ENOTFOUND, NULL);
}

static void test_jp_a13_duplicate_op_member(void)
{
    /* RFC 6902 A.13 calls this patch invalid. Our parser keeps the last duplicate ("remove"),
     * and removing the missing /baz fails: the patch is rejected either way. */
    fail_case("jp_A13", "{\"foo\":\"bar\"}",
              "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\",\"op\":\"remove\"}]", L3_ENOTFOUND, NULL);
}

static void test_jp_a14_escape_ordering(void)
{
    exact_case("jp_A14", JP, "{\"/\":9,\"~1\":10}", "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":10}]",
               "{\"/\":9,\"~1\":10}");
}

static void test_jp_a15_compare_string_and_number(void)
{
    fail_case("jp_A15", "{\"/\":9,\"~1\":10}", "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":\"10\"}]",
              L3_ETYPE, "test failed");
}

static void test_jp_a16_add_array_value(void)
{
    exact_case("jp_A16", JP, "{\"foo\":[\"bar\"]}",
               "[{\"op\":\"add\",\"path\":\"/foo/-\",\"value\":[\"abc\",\"def\"]}]",
               "{\"foo\":[\"bar\",[\"abc\",\"def\"]]}");
}

/* ---------------------------------------------------------------- more JSON Patch behaviour */

static void test_jp_add_replaces_existing_member_in_place(void)
{
    exact_case("jp_add_existing", JP, "{\"a\":1,\"b\":2}", "[{\"op\":\"add\",\"path\":\"/a\",\"value\":[3]}]",
               "{\"a\":[3],\"b\":2}");
}

static void test_jp_add_root_replaces_document(void)
{
    exact_case("jp_add_root", JP, "{\"a\":1}", "[{\"op\":\"add\",\"path\":\"\",\"value\":{\"z\":[null]}}]",
               "{\"z\":[null]}");
}

static void test_jp_replace_root(void)
{
    exact_case("jp_replace_root", JP, "[1,2]", "[{\"op\":\"replace\",\"path\":\"\",\"value\":\"s\"}]",
               "\"s\"");
}

static void test_jp_add_array_front_and_end(void)
{
    exact_case("jp_add_array_ends", JP, "[1,2]",
               "[{\"op\":\"add\",\"path\":\"/0\",\"value\":0},{\"op\":\"add\",\"path\":\"/3\",\"value\":3},"
               "{\"op\":\"add\",\"path\":\"/-\",\"value\":4}]",
               "[0,1,2,3,4]");
}

static void test_jp_replace_array_element(void)
{
    exact_case("jp_replace_elem", JP, "[1,2,3]", "[{\"op\":\"replace\",\"path\":\"/1\",\"value\":{\"x\":1}}]",
               "[1,{\"x\":1},3]");
}

static void test_jp_copy(void)
{
    exact_case("jp_copy", JP, "{\"a\":{\"x\":[1,2]},\"b\":[]}",
               "[{\"op\":\"copy\",\"from\":\"/a\",\"path\":\"/c\"},{\"op\":\"copy\",\"from\":\"/a/x/"
               "1\",\"path\":\"/b/0\"},"
               "{\"op\":\"replace\",\"path\":\"/c/x/0\",\"value\":9}]",
               "{\"a\":{\"x\":[1,2]},\"b\":[2],\"c\":{\"x\":[9,2]}}");
}

static void test_jp_copy_into_own_child(void)
{
    /* Copying (unlike moving) a value into its own child is allowed: the copy is taken first. */
    exact_case("jp_copy_own_child", JP, "{\"a\":{\"x\":1}}",
               "[{\"op\":\"copy\",\"from\":\"/a\",\"path\":\"/a/b\"}]", "{\"a\":{\"x\":1,\"b\":{\"x\":1}}}");
}

static void test_jp_move_array_backwards(void)
{
    exact_case("jp_move_back", JP, "[\"a\",\"b\",\"c\",\"d\"]",
               "[{\"op\":\"move\",\"from\":\"/3\",\"path\":\"/0\"}]", "[\"d\",\"a\",\"b\",\"c\"]");
}

static void test_jp_move_onto_itself(void)
{
    exact_case("jp_move_self", JP, "{\"a\":{\"b\":1},\"c\":2}",
               "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a\"}]", "{\"a\":{\"b\":1},\"c\":2}");
}

static void test_jp_move_to_root(void)
{
    exact_case("jp_move_root", JP, "{\"a\":{\"b\":[1]},\"c\":2}",
               "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"\"}]", "{\"b\":[1]}");
}

static void test_jp_move_member_goes_last(void)
{
    /* A moved member is removed and added again: it ends up last in insertion order. */
    exact_case("jp_move_rename", JP, "{\"a\":1,\"b\":2,\"c\":3}",
               "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/z\"}]", "{\"b\":2,\"c\":3,\"z\":1}");
}

static void test_jp_escaped_paths(void)
{
    exact_case("jp_escapes", JP, "{\"a/b\":{\"c~d\":1}}",
               "[{\"op\":\"replace\",\"path\":\"/a~1b/c~0d\",\"value\":2},{\"op\":\"add\",\"path\":\"/"
               "~0\",\"value\":3}]",
               "{\"a/b\":{\"c~d\":2},\"~\":3}");
}

static void test_jp_empty_patch(void)
{
    exact_case("jp_empty", JP, "{\"a\":1}", "[]", "{\"a\":1}");
}

static void test_jp_test_semantics(void)
{
    const char *doc =
        "{\"i\":1,\"d\":100,\"big\":12345678901234567890,\"f\":0.5,\"o\":{\"a\":1,\"b\":[true,null]},"
        "\"arr\":[1,2],\"neg0\":0}";
    /* Numbers compare by value, whatever their spelling; objects compare without order. */
    exact_case(
        "jp_test_numbers_by_value", JP, doc,
        "[{\"op\":\"test\",\"path\":\"/i\",\"value\":1.0},{\"op\":\"test\",\"path\":\"/d\",\"value\":1e2},"
        "{\"op\":\"test\",\"path\":\"/big\",\"value\":1.2345678901234567890e19},"
        "{\"op\":\"test\",\"path\":\"/f\",\"value\":5e-1},{\"op\":\"test\",\"path\":\"/"
        "neg0\",\"value\":-0.0},"
        "{\"op\":\"test\",\"path\":\"/o\",\"value\":{\"b\":[true,null],\"a\":1.00}},"
        "{\"op\":\"test\",\"path\":\"\",\"value\":"
        "{\"neg0\":0,\"arr\":[1,2],\"o\":{\"b\":[true,null],\"a\":1},"
        "\"f\":0.5,\"big\":12345678901234567890,\"d\":100,\"i\":1}}]",
        doc);
    fail_case("jp_test_array_order", doc, "[{\"op\":\"test\",\"path\":\"/arr\",\"value\":[2,1]}]", L3_ETYPE,
              "test failed");
    fail_case("jp_test_bignum_differs", doc,
              "[{\"op\":\"test\",\"path\":\"/big\",\"value\":12345678901234567891}]", L3_ETYPE,
              "test failed");
    fail_case("jp_test_bignum_vs_double", doc,
              "[{\"op\":\"test\",\"path\":\"/big\",\"value\":12345678901234567000}]", L3_ETYPE,
              "test failed");
    fail_case("jp_test_extra_member", doc,
              "[{\"op\":\"test\",\"path\":\"/o\",\"value\":{\"a\":1,\"b\":[true,null],\"c\":0}}]", L3_ETYPE,
              "test failed");
    fail_case("jp_test_missing_member", doc,
              "[{\"op\":\"test\",\"path\":\"/o\",\"value\":{\"a\":1,\"c\":[true,null]}}]", L3_ETYPE,
              "test failed");
    fail_case("jp_test_null_vs_false", "[null]", "[{\"op\":\"test\",\"path\":\"/0\",\"value\":false}]",
              L3_ETYPE, "test failed");
    fail_case("jp_test_int_vs_fraction", "[1]", "[{\"op\":\"test\",\"path\":\"/0\",\"value\":1.0000000001}]",
              L3_ETYPE, "test failed");
    fail_case("jp_test_missing_path", doc, "[{\"op\":\"test\",\"path\":\"/nope\",\"value\":1}]", L3_ENOTFOUND,
              NULL);
}

/* ---------------------------------------------------------------- JSON Patch errors */

static void test_jp_error_patch_not_array(void)
{
    fail_case("jp_err_not_array", "{}", "{\"op\":\"add\",\"path\":\"/a\",\"value\":1}", L3_ESYNTAX,
              "not an array");
}

static void test_jp_error_operation_not_object(void)
{
    fail_case("jp_err_op_not_object", "{}", "[1]", L3_ESYNTAX, "not an object");
}

static void test_jp_error_missing_op(void)
{
    fail_case("jp_err_missing_op", "{}", "[{\"path\":\"/a\",\"value\":1}]", L3_ESYNTAX, "\"op\"");
}

static void test_jp_error_bad_op(void)
{
    fail_case("jp_err_bad_op", "{}", "[{\"op\":\"frobnicate\",\"path\":\"/a\",\"value\":1}]", L3_ESYNTAX,
              "unknown");
    fail_case("jp_err_op_not_string", "{}", "[{\"op\":1,\"path\":\"/a\",\"value\":1}]", L3_ESYNTAX, "\"op\"");
    fail_case("jp_err_op_case", "{}", "[{\"op\":\"ADD\",\"path\":\"/a\",\"value\":1}]", L3_ESYNTAX,
              "unknown");
}

static void test_jp_error_missing_path(void)
{
    fail_case("jp_err_missing_path", "{}", "[{\"op\":\"add\",\"value\":1}]", L3_ESYNTAX, "\"path\"");
    fail_case("jp_err_path_not_string", "{}", "[{\"op\":\"add\",\"path\":[],\"value\":1}]", L3_ESYNTAX,
              "\"path\"");
    fail_case("jp_err_path_not_pointer", "{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"a\"}]", L3_EPATH,
              "Pointer");
}

static void test_jp_error_missing_value_and_from(void)
{
    fail_case("jp_err_missing_value_add", "{}", "[{\"op\":\"add\",\"path\":\"/a\"}]", L3_ESYNTAX,
              "\"value\"");
    fail_case("jp_err_missing_value_replace", "{\"a\":1}", "[{\"op\":\"replace\",\"path\":\"/a\"}]",
              L3_ESYNTAX, "\"value\"");
    fail_case("jp_err_missing_value_test", "{\"a\":1}", "[{\"op\":\"test\",\"path\":\"/a\"}]", L3_ESYNTAX,
              "\"value\"");
    fail_case("jp_err_missing_from_move", "{\"a\":1}", "[{\"op\":\"move\",\"path\":\"/b\"}]", L3_ESYNTAX,
              "\"from\"");
    fail_case("jp_err_missing_from_copy", "{\"a\":1}", "[{\"op\":\"copy\",\"path\":\"/b\"}]", L3_ESYNTAX,
              "\"from\"");
}

static void test_jp_error_path_does_not_exist(void)
{
    fail_case("jp_err_replace_missing", "{\"a\":1}", "[{\"op\":\"replace\",\"path\":\"/b\",\"value\":1}]",
              L3_ENOTFOUND, NULL);
    fail_case("jp_err_move_from_missing", "{\"a\":1}", "[{\"op\":\"move\",\"from\":\"/b\",\"path\":\"/c\"}]",
              L3_ENOTFOUND, "\"from\"");
    fail_case("jp_err_copy_from_missing", "{\"a\":[]}",
              "[{\"op\":\"copy\",\"from\":\"/a/0\",\"path\":\"/c\"}]", L3_ENOTFOUND, "\"from\"");
    fail_case("jp_err_replace_array_end", "[1]", "[{\"op\":\"replace\",\"path\":\"/1\",\"value\":1}]",
              L3_ENOTFOUND, NULL);
}

static void test_jp_error_remove_root(void)
{
    fail_case("jp_err_remove_root", "{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"\"}]", L3_EPATH, "root");
}

static void test_jp_error_remove_missing_member(void)
{
    fail_case("jp_err_remove_missing", "{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"/b\"}]", L3_ENOTFOUND,
              NULL);
    fail_case("jp_err_remove_missing_elem", "[1]", "[{\"op\":\"remove\",\"path\":\"/1\"}]", L3_ENOTFOUND,
              NULL);
}

static void test_jp_error_move_into_own_child(void)
{
    fail_case("jp_err_move_own_child", "{\"a\":{\"b\":{}}}",
              "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a/b/c\"}]", L3_EPATH, "own children");
    fail_case("jp_err_move_root_child", "{\"a\":{}}", "[{\"op\":\"move\",\"from\":\"\",\"path\":\"/a/x\"}]",
              L3_EPATH, "own children");
    /* "/ab" is not a child of "/a": a plain string prefix is not enough. */
    exact_case("jp_move_sibling_prefix", JP, "{\"a\":1,\"ab\":{}}",
               "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/ab/x\"}]", "{\"ab\":{\"x\":1}}");
}

static void test_jp_error_bad_array_index(void)
{
    char *got;
    l3_doc_error_t e = {0};
    /* Past the end, leading zero, not a number: all rejected, document unchanged. */
    static const char *bad[] = {
        "[{\"op\":\"add\",\"path\":\"/3\",\"value\":0}]",
        "[{\"op\":\"add\",\"path\":\"/01\",\"value\":0}]",
        "[{\"op\":\"add\",\"path\":\"/x\",\"value\":0}]",
        "[{\"op\":\"remove\",\"path\":\"/-\"}]",
    };
    /* past the end and "-" name no element; a leading zero or a non-number is malformed */
    static const int want[] = {L3_ENOTFOUND, L3_EPATH, L3_EPATH, L3_ENOTFOUND};
    for (size_t i = 0; i < L3_ARRAY_SIZE(bad); i++) {
        int rc = run(JP, "[1,2]", bad[i], &got, &e);
        if (rc >= 0)
            fprintf(stderr, "jp_err_bad_index %zu: accepted, got %s\n", i, got ? got : "(null)");
        CHECK_EQ_INT(rc, want[i]);
        CHECK_EQ_STR(got, "[1,2]");
        free(got);
    }
}

static void test_jp_error_syntax_and_offsets(void)
{
    /* Invalid patch text: L3_ESYNTAX with the parser's byte offset. */
    char *got;
    l3_doc_error_t e = {0};
    int rc = run(JP, "{}", "[{\"op\":\"add\",,}]", &got, &e);
    CHECK_EQ_INT(rc, L3_ESYNTAX);
    CHECK_EQ_INT(e.offset, 13);
    free(got);

    /* An operation that fails reports the byte offset where that operation starts, and the
     * operations before it stay applied (the call is not atomic). */
    const char *patch = "[ {\"op\":\"add\",\"path\":\"/a\",\"value\":[1,{\"x\":\"]\"}]},\n"
                        "  {\"op\":\"remove\",\"path\":\"/zz\"} ]";
    rc = run(JP, "{}", patch, &got, &e);
    CHECK_EQ_INT(rc, L3_ENOTFOUND);
    CHECK_EQ_INT(e.offset, (size_t)(strstr(patch, "{\"op\":\"remove\"") - patch));
    CHECK_EQ_STR(got, "{\"a\":[1,{\"x\":\"]\"}]}");
    free(got);
}

/* ---------------------------------------------------------------- randomised JSON Patch vs jansson */

/* RFC 6902 on jansson trees (the oracle). Pointers are split into unescaped tokens. */
typedef struct {
    char *tok[64];
    int n;
} ref_ptr_t;

static bool ref_split(const char *p, ref_ptr_t *r)
{
    r->n = 0;
    if (*p == '\0')
        return true;
    if (*p != '/')
        return false;
    while (*p == '/' && r->n < 64) {
        p++;
        size_t len = strcspn(p, "/");
        char *t = malloc(len + 1), *o = t;
        for (size_t i = 0; i < len; i++) {
            if (p[i] == '~' && i + 1 < len && (p[i + 1] == '0' || p[i + 1] == '1')) {
                *o++ = p[i + 1] == '0' ? '~' : '/';
                i++;
            } else {
                *o++ = p[i];
            }
        }
        *o = '\0';
        r->tok[r->n++] = t;
        p += len;
    }
    return true;
}

static void ref_free(ref_ptr_t *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->tok[i]);
    r->n = 0;
}

/* Array index per RFC 6901: "0" or digits without a leading zero; -1 if not one. */
static long ref_index(const char *t)
{
    size_t len = strlen(t);
    if (len == 0 || len > 9 || (len > 1 && t[0] == '0') || strspn(t, "0123456789") != len)
        return -1;
    return atol(t);
}

static json_t *ref_get(json_t *root, const ref_ptr_t *r, int upto)
{
    json_t *cur = root;
    for (int i = 0; i < upto && cur; i++) {
        if (json_is_object(cur)) {
            cur = json_object_get(cur, r->tok[i]);
        } else if (json_is_array(cur)) {
            long ix = ref_index(r->tok[i]);
            cur = ix < 0 ? NULL : json_array_get(cur, (size_t)ix);
        } else {
            cur = NULL;
        }
    }
    return cur;
}

/* add: steals v. 0 or -1. */
static int ref_add(json_t **root, const ref_ptr_t *r, json_t *v)
{
    if (r->n == 0) {
        json_decref(*root);
        *root = v;
        return 0;
    }
    json_t *parent = ref_get(*root, r, r->n - 1);
    const char *last = r->tok[r->n - 1];
    if (json_is_object(parent))
        return json_object_set_new(parent, last, v);
    if (json_is_array(parent)) {
        if (strcmp(last, "-") == 0)
            return json_array_append_new(parent, v);
        long ix = ref_index(last);
        if (ix >= 0 && (size_t)ix <= json_array_size(parent))
            return json_array_insert_new(parent, (size_t)ix, v);
    }
    json_decref(v);
    return -1;
}

static int ref_remove(json_t *root, const ref_ptr_t *r)
{
    if (r->n == 0)
        return -1;
    json_t *parent = ref_get(root, r, r->n - 1);
    const char *last = r->tok[r->n - 1];
    if (json_is_object(parent))
        return json_object_del(parent, last);
    if (json_is_array(parent)) {
        long ix = ref_index(last);
        if (ix >= 0 && (size_t)ix < json_array_size(parent))
            return json_array_remove(parent, (size_t)ix);
    }
    return -1;
}

/* Apply one operation object to *root. 0 or -1. */
static int ref_apply(json_t **root, json_t *op)
{
    const char *kind = json_string_value(json_object_get(op, "op"));
    const char *path = json_string_value(json_object_get(op, "path"));
    const char *from = json_string_value(json_object_get(op, "from"));
    json_t *value = json_object_get(op, "value");
    ref_ptr_t p = {.n = 0}, f = {.n = 0};
    int rc = -1;
    if (!kind || !path || !ref_split(path, &p))
        goto out;
    if (strcmp(kind, "add") == 0) {
        rc = ref_add(root, &p, json_deep_copy(value));
    } else if (strcmp(kind, "remove") == 0) {
        rc = ref_remove(*root, &p);
    } else if (strcmp(kind, "replace") == 0) {
        if (ref_get(*root, &p, p.n)) {
            /* replace keeps an object member in its place: set it directly */
            if (p.n == 0) {
                rc = ref_add(root, &p, json_deep_copy(value));
            } else {
                json_t *parent = ref_get(*root, &p, p.n - 1);
                if (json_is_object(parent))
                    rc = json_object_set_new(parent, p.tok[p.n - 1], json_deep_copy(value));
                else
                    rc = json_array_set_new(parent, (size_t)ref_index(p.tok[p.n - 1]), json_deep_copy(value));
            }
        }
    } else if (strcmp(kind, "test") == 0) {
        json_t *cur = ref_get(*root, &p, p.n);
        rc = cur && json_equal(cur, value) ? 0 : -1;
    } else if ((strcmp(kind, "move") == 0 || strcmp(kind, "copy") == 0) && from && ref_split(from, &f)) {
        json_t *src = ref_get(*root, &f, f.n);
        size_t fl = strlen(from);
        bool move = kind[0] == 'm';
        if (!src)
            goto out;
        if (move && strcmp(from, path) == 0) {
            rc = 0;
            goto out;
        }
        if (move && strncmp(path, from, fl) == 0 && path[fl] == '/')
            goto out;
        json_t *v = json_deep_copy(src);
        if (move && ref_remove(*root, &f) < 0) {
            json_decref(v);
            goto out;
        }
        rc = ref_add(root, &p, v);
    }
out:
    ref_free(&p);
    ref_free(&f);
    return rc;
}

/* Every path of the tree, escaped, into paths[] (up to max). */
static void ref_paths(json_t *v, char *prefix, size_t plen, char **paths, int *n, int max)
{
    if (*n >= max)
        return;
    paths[(*n)++] = strndup(prefix, plen);
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach(v, k, c)
        {
            char buf[512];
            size_t o = plen;
            memcpy(buf, prefix, plen);
            buf[o++] = '/';
            for (const char *q = k; *q && o < sizeof(buf) - 3; q++) {
                if (*q == '~' || *q == '/') {
                    buf[o++] = '~';
                    buf[o++] = *q == '~' ? '0' : '1';
                } else {
                    buf[o++] = *q;
                }
            }
            ref_paths(c, buf, o, paths, n, max);
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            char buf[512];
            int o = snprintf(buf, sizeof(buf), "%.*s/%zu", (int)plen, prefix, i);
            ref_paths(json_array_get(v, i), buf, (size_t)o, paths, n, max);
        }
    }
}

static void test_jp_random_vs_jansson(void)
{
    static const char *kinds[] = {"add", "remove", "replace", "move", "copy", "test"};
    static const char *suffix[] = {"/a", "/d~1e", "/f~0g", "/0", "/1", "/-", "/9", "/01", "/"};
    uint64_t st = t_seed() ^ 0x5bd1e995u;
    int bad = 0, applied = 0, failed = 0;
    for (int doc = 0; doc < 60 && bad < 5; doc++) {
        json_t *ref = json_object();
        json_object_set_new(ref, "a", rand_value(&st, 1));
        json_object_set_new(ref, "b", json_pack("[i,{s:i},[]]", 1, "x", 2));
        char *init = json_dumps(ref, JSON_COMPACT);
        l3_doc_t d;
        if (load_doc(&d, init) < 0) {
            t_failures++;
            free(init);
            json_decref(ref);
            return;
        }
        free(init);
        for (int step = 0; step < 60 && bad < 5; step++) {
            char *paths[256];
            int np = 0;
            ref_paths(ref, "", 0, paths, &np, 256);
            const char *kind = kinds[t_rand(&st) % L3_ARRAY_SIZE(kinds)];
            char path[600], from[600];
            snprintf(path, sizeof(path), "%s%s", paths[t_rand(&st) % (unsigned)np],
                     t_rand(&st) % 2 ? suffix[t_rand(&st) % L3_ARRAY_SIZE(suffix)] : "");
            snprintf(from, sizeof(from), "%s", paths[t_rand(&st) % (unsigned)np]);
            json_t *op = json_object();
            json_object_set_new(op, "op", json_string(kind));
            json_object_set_new(op, "path", json_string(path));
            json_object_set_new(op, "from", json_string(from));
            if (strcmp(kind, "test") == 0 && t_rand(&st) % 2) {
                ref_ptr_t p;
                json_t *v = ref_split(path, &p) ? ref_get(ref, &p, p.n) : NULL;
                ref_free(&p);
                json_object_set_new(op, "value", v ? json_deep_copy(v) : json_null());
            } else {
                json_object_set_new(op, "value", rand_value(&st, 2));
            }
            json_t *patch = json_pack("[O]", op);
            char *ps = json_dumps(patch, JSON_COMPACT);
            int want = ref_apply(&ref, op);
            l3_doc_error_t e = {0};
            int rc = l3_doc_json_patch(&d, ps, strlen(ps), &e);
            char *got = doc_text(&d);
            char *ws = json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY);
            bool ok = (rc == 0) == (want == 0);
            if (ok) { /* after a failure too: the document holds what the oracle holds */
                json_t *gj = got ? jparse(got) : NULL;
                ok = gj && json_equal(gj, ref) && strcmp(got, ws) == 0; /* order kept too */
                json_decref(gj);
                applied += rc == 0;
                failed += rc != 0;
            }
            if (!ok) {
                fprintf(stderr,
                        "jp_random doc %d step %d: patch %s: rc %d (%s) vs oracle %d\n  got  %s\n  want %s\n",
                        doc, step, ps, rc, e.msg ? e.msg : "-", want, got ? got : "(null)", ws);
                bad++;
            }
            if (!ok) { /* restart both from the oracle so that later steps still test something */
                l3_doc_heap_free(&d);
                if (load_doc(&d, ws) < 0) {
                    bad++;
                    free(ws);
                    free(got);
                    free(ps);
                    json_decref(patch);
                    json_decref(op);
                    for (int i = 0; i < np; i++)
                        free(paths[i]);
                    break;
                }
            }
            CHECK_EQ_INT(l3_doc_verify(d.buf, l3_doc_size(d.buf), NULL), 0);
            free(ws);
            free(got);
            free(ps);
            json_decref(patch);
            json_decref(op);
            for (int i = 0; i < np; i++)
                free(paths[i]);
        }
        l3_doc_heap_free(&d);
        json_decref(ref);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(applied > 500); /* enough operations actually succeeded to mean something */
    CHECK(failed > 100);  /* and enough failed, each compared with the oracle */
}

static void test_jp_many_ops_grow_and_compact(void)
{
    /* Thousands of replace ops with ever longer strings: growth and compaction in between. */
    l3_doc_t d;
    if (load_doc(&d, "{\"s\":\"\",\"n\":0,\"list\":[]}") < 0) {
        t_failures++;
        return;
    }
    char patch[600], val[300];
    for (int i = 0; i < 3000; i++) {
        int w = i % 250;
        memset(val, 'a' + i % 26, (size_t)w);
        val[w] = '\0';
        int n = snprintf(patch, sizeof(patch),
                         "[{\"op\":\"replace\",\"path\":\"/s\",\"value\":\"%s\"},"
                         "{\"op\":\"replace\",\"path\":\"/n\",\"value\":%d},"
                         "{\"op\":\"add\",\"path\":\"/list/0\",\"value\":%d}%s]",
                         val, i, i, i % 2 ? ",{\"op\":\"remove\",\"path\":\"/list/1\"}" : "");
        int rc = l3_doc_json_patch(&d, patch, (size_t)n, NULL);
        if (rc != 0) {
            fprintf(stderr, "jp_many_ops step %d: rc %d\n", i, rc);
            CHECK_EQ_INT(rc, 0);
            break;
        }
    }
    CHECK_EQ_INT(l3_doc_verify(d.buf, l3_doc_size(d.buf), NULL), 0);
    l3_doc_val_t v;
    CHECK_EQ_INT(l3_doc_get(d.buf, "/n", 2, L3_DOC_PATH_POINTER, &v), 0);
    CHECK_EQ_INT(v.i, 2999);
    CHECK_EQ_INT(l3_doc_get(d.buf, "/list", 5, L3_DOC_PATH_POINTER, &v), 0);
    CHECK_EQ_INT(v.count, 1500);
    /* Bounded: 3000 rewrites of up to 250 bytes must not leave megabytes behind. */
    CHECK(l3_doc_size(d.buf) < 256 * 1024);
    l3_doc_heap_free(&d);
}

static const struct {
    const char *name;
    void (*fn)(void);
} cases[] = {
    {"merge_rfc7396_appendix_a", test_merge_rfc7396_appendix_a},
    {"merge_rfc7396_section3_keeps_order", test_merge_rfc7396_section3_keeps_order},
    {"merge_escaped_keys", test_merge_escaped_keys},
    {"merge_exact_numbers", test_merge_exact_numbers},
    {"merge_syntax_error", test_merge_syntax_error},
    {"merge_root_keeps_lsn", test_merge_root_keeps_lsn},
    {"merge_grows_small_buffer", test_merge_grows_small_buffer},
    {"merge_random_vs_jansson", test_merge_random_vs_jansson},
    {"jp_a01_add_object_member", test_jp_a01_add_object_member},
    {"jp_a02_add_array_element", test_jp_a02_add_array_element},
    {"jp_a03_remove_object_member", test_jp_a03_remove_object_member},
    {"jp_a04_remove_array_element", test_jp_a04_remove_array_element},
    {"jp_a05_replace_value", test_jp_a05_replace_value},
    {"jp_a06_move_value", test_jp_a06_move_value},
    {"jp_a07_move_array_element", test_jp_a07_move_array_element},
    {"jp_a08_test_success", test_jp_a08_test_success},
    {"jp_a09_test_error", test_jp_a09_test_error},
    {"jp_a10_add_nested_member_object", test_jp_a10_add_nested_member_object},
    {"jp_a11_ignore_unrecognized_members", test_jp_a11_ignore_unrecognized_members},
    {"jp_a12_add_to_nonexistent_target", test_jp_a12_add_to_nonexistent_target},
    {"jp_a13_duplicate_op_member", test_jp_a13_duplicate_op_member},
    {"jp_a14_escape_ordering", test_jp_a14_escape_ordering},
    {"jp_a15_compare_string_and_number", test_jp_a15_compare_string_and_number},
    {"jp_a16_add_array_value", test_jp_a16_add_array_value},
    {"jp_add_replaces_existing_member_in_place", test_jp_add_replaces_existing_member_in_place},
    {"jp_add_root_replaces_document", test_jp_add_root_replaces_document},
    {"jp_replace_root", test_jp_replace_root},
    {"jp_add_array_front_and_end", test_jp_add_array_front_and_end},
    {"jp_replace_array_element", test_jp_replace_array_element},
    {"jp_copy", test_jp_copy},
    {"jp_copy_into_own_child", test_jp_copy_into_own_child},
    {"jp_move_array_backwards", test_jp_move_array_backwards},
    {"jp_move_onto_itself", test_jp_move_onto_itself},
    {"jp_move_to_root", test_jp_move_to_root},
    {"jp_move_member_goes_last", test_jp_move_member_goes_last},
    {"jp_escaped_paths", test_jp_escaped_paths},
    {"jp_empty_patch", test_jp_empty_patch},
    {"jp_test_semantics", test_jp_test_semantics},
    {"jp_error_patch_not_array", test_jp_error_patch_not_array},
    {"jp_error_operation_not_object", test_jp_error_operation_not_object},
    {"jp_error_missing_op", test_jp_error_missing_op},
    {"jp_error_bad_op", test_jp_error_bad_op},
    {"jp_error_missing_path", test_jp_error_missing_path},
    {"jp_error_missing_value_and_from", test_jp_error_missing_value_and_from},
    {"jp_error_path_does_not_exist", test_jp_error_path_does_not_exist},
    {"jp_error_remove_root", test_jp_error_remove_root},
    {"jp_error_remove_missing_member", test_jp_error_remove_missing_member},
    {"jp_error_move_into_own_child", test_jp_error_move_into_own_child},
    {"jp_error_bad_array_index", test_jp_error_bad_array_index},
    {"jp_error_syntax_and_offsets", test_jp_error_syntax_and_offsets},
    {"jp_many_ops_grow_and_compact", test_jp_many_ops_grow_and_compact},
    {"jp_random_vs_jansson", test_jp_random_vs_jansson},
};

/* Usage: test-docpatch [PREFIX...]: run the cases whose name starts with one of the prefixes (all by
 * default). */
int main(int argc, char **argv)
{
    for (size_t i = 0; i < L3_ARRAY_SIZE(cases); i++) {
        bool run_it = argc < 2;
        for (int a = 1; a < argc && !run_it; a++)
            run_it = strncmp(cases[i].name, argv[a], strlen(argv[a])) == 0;
        if (!run_it)
            continue;
        int before = t_failures;
        cases[i].fn();
        printf("%s %s\n", t_failures == before ? "ok  " : "FAIL", cases[i].name);
    }
    return t_done();
}
