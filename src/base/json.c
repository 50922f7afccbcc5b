/* SPDX-License-Identifier: MIT */
/*
 * json.c - the bounded and stdio forms of the JSON string escaper (l3kv/json.h, where
 * the escaper itself and the UTF-8 validator are defined inline).
 */
#include <string.h>

#include "l3kv/json.h"

size_t l3_json_escape_n(char *out, size_t cap, const void *src, size_t len)
{
    const uint8_t *s = src;
    size_t i = 0, w = 0;
    while (i < len) {
        char tmp[6];
        size_t in = 1, n;
        if (l3_json__plain(s[i], false)) {
            tmp[0] = (char)s[i];
            n = 1;
        } else if (s[i] >= 0x80 && (in = l3_utf8_seq(s + i, len - i)) > 0) {
            memcpy(tmp, s + i, in);
            n = in;
        } else {
            in = 1;
            n = l3_json__esc_byte(tmp, s[i]);
        }
        if (w + n > cap)
            break;
        memcpy(out + w, tmp, n);
        w += n;
        i += in;
    }
    return w;
}

void l3_json_fput(FILE *f, const void *src, size_t len)
{
    const uint8_t *s = src;
    char buf[6 * 256];
    while (len > 0) {
        size_t n = len < 256 ? len : 256;
        /* do not split a UTF-8 sequence across chunks: back off to its lead byte */
        if (n < len)
            while (n > 253 && (s[n] & 0xC0) == 0x80)
                n--;
        char *e = l3_json_escape(buf, s, n, 0);
        fwrite(buf, 1, (size_t)(e - buf), f);
        s += n;
        len -= n;
    }
}
