/* SPDX-License-Identifier: MIT */
/* Known-answer tests for crc32c and siphash, and l3_strerror coverage. */
#include <errno.h>

#include "l3kv/base.h"
#include "l3kv/error.h"
#include "t.h"

int main(void)
{
    CHECK_EQ_INT(l3_crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ_INT(l3_crc32c(0, "", 0), 0);
    /* incremental == one shot */
    uint32_t c = l3_crc32c(0, "12345", 5);
    CHECK_EQ_INT(l3_crc32c(c, "6789", 4), 0xE3069283u);
    /* SipHash-2-4 reference vector: key 00..0f, message 00..0e (15 bytes) -> a129ca6149be45e5 */
    uint8_t key[16], msg[64];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    CHECK(l3_siphash(key, msg, 15) == 0xa129ca6149be45e5ULL);
    CHECK(l3_siphash(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
    for (int rc = L3_EMAX + 1; rc < L3_EBASE; rc++)
        CHECK(strcmp(l3_strerror(rc), "unknown error") != 0);
    CHECK(strcmp(l3_strerror(-ENOENT), strerror(ENOENT)) == 0);
    return t_done();
}
