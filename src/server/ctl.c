/* SPDX-License-Identifier: MIT */
/*
 * ctl.c - the shared control block (layout and socket assignment drawn in ctl.h).
 *
 * Process: created in the supervisor before the first fork; the supervisor is its only
 * writer, workers read it.
 */
#include <signal.h>
#include <sys/mman.h>

#include "ctl.h"
#include "obs.h"

l3_srv_ctl_t *l3_srv_ctl_create(void)
{
    l3_srv_ctl_t *ctl =
        mmap(NULL, sizeof(l3_srv_ctl_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ctl == MAP_FAILED)
        return NULL;
    ctl->sc_magic = L3_SRV_CTL_MAGIC;
    return ctl;
}

bool l3_srv_ctl_serves(const l3_srv_ctl_t *ctl, uint32_t slot, uint32_t sock)
{
    uint32_t live[L3_SRV_MAX_WORKERS], n = 0;
    for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++)
        if (__atomic_load_n(&ctl->sc_state[i], __ATOMIC_ACQUIRE) == L3_OBS_SLOT_RUNNING)
            live[n++] = i;
    return n > 0 && live[sock % n] == slot;
}

void l3_srv_ctl_wake(const l3_srv_ctl_t *ctl)
{
    for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++) {
        int32_t pid = __atomic_load_n(&ctl->sc_pid[i], __ATOMIC_RELAXED);
        if (pid > 0 && __atomic_load_n(&ctl->sc_state[i], __ATOMIC_ACQUIRE) == L3_OBS_SLOT_RUNNING)
            (void)kill(pid, L3_SRV_CTL_SIGNAL);
    }
}
