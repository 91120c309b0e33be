/* SPDX-License-Identifier: MIT */

#include <errno.h>
#include <stdlib.h>

#include <systemd/sd-bus.h>

#include "log.h"
#include "sleep-monitor.h"

struct sleep_monitor {
        sd_bus *bus;
        sd_bus_slot *match;
        sleep_fn cb;
        void *userdata;
};

static int match_prepare_for_sleep(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        struct sleep_monitor *mon = userdata;
        int sleeping, r;

        r = sd_bus_message_read(m, "b", &sleeping);
        if (r < 0) {
                log_debug_errno(r, "malformed PrepareForSleep signal, ignoring: %m");
                return 0;
        }
        log_info("%s", sleeping ? "the system is going to sleep" : "the system resumed: reconnecting");
        mon->cb(sleeping, mon->userdata);
        return 0;
}

int sleep_monitor_new(sd_event *e, sleep_fn cb, void *userdata, struct sleep_monitor **ret) {
        struct sleep_monitor *m;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->cb = cb;
        m->userdata = userdata;

        /* honours $DBUS_SYSTEM_BUS_ADDRESS (the tests' private bus) */
        r = sd_bus_open_system(&m->bus);
        if (r < 0) {
                log_debug_errno(r, "no system bus (%m): suspend/resume will be noticed by keepalive only");
                goto inactive;
        }
        r = sd_bus_attach_event(m->bus, e, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                goto fail;
        /* sender: only logind's signal counts, not anyone's on the bus */
        r = sd_bus_match_signal_async(m->bus, &m->match, "org.freedesktop.login1", "/org/freedesktop/login1",
                                      "org.freedesktop.login1.Manager", "PrepareForSleep",
                                      match_prepare_for_sleep, NULL, m);
        if (r < 0)
                goto fail;
        *ret = m;
        return 0;

fail:
        log_debug_errno(r, "cannot watch logind's PrepareForSleep (%m): suspend/resume will be noticed by "
                        "keepalive only");
        m->match = sd_bus_slot_unref(m->match);
        m->bus = sd_bus_flush_close_unref(m->bus);
inactive:
        *ret = m;
        return 0;
}

struct sleep_monitor *sleep_monitor_free(struct sleep_monitor *m) {
        if (!m)
                return NULL;
        sd_bus_slot_unref(m->match);
        sd_bus_flush_close_unref(m->bus);
        free(m);
        return NULL;
}

bool sleep_monitor_active(const struct sleep_monitor *m) {
        return m && m->bus;
}
