/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Kernel routing and address changes (rtnetlink), debounced: called once
 * things settle after links, addresses or main-table routes changed on a
 * non-loopback interface. Nothing is sent anywhere: the kernel tells us.
 */

#include <stdint.h>
#include <systemd/sd-event.h>

struct net_monitor;

typedef void (*net_changed_fn)(void *userdata);

int net_monitor_new(sd_event *e, uint64_t settle_usec, net_changed_fn cb, void *userdata, struct net_monitor **ret);
struct net_monitor *net_monitor_free(struct net_monitor *m);
