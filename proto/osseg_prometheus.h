/* The daemon's Stats message in the Prometheus text exposition format
 * (version 0.0.4): one formatter for `osseg stats --prometheus` and for the
 * file ossegd writes for node_exporter's textfile collector (--metrics-file),
 * so the two never differ.
 *
 * It lives beside the wire protocol because it is a function of one wire
 * message and nothing else: the daemon and the clients both link the
 * protocol already, and neither has to depend on the other for it.
 *
 * Families, in this order (times in seconds, the Prometheus base unit; the
 * message carries milliseconds):
 *   osseg_requests_total{outcome}                 counter    outcomes (1)
 *   osseg_model_requests_total{model,outcome}     counter    model_requests (22)
 *   osseg_request_duration_seconds                histogram  total (21)
 *   osseg_queue_wait_seconds                      histogram  queue_wait (20)
 *   osseg_inference_duration_seconds{model}       histogram  model_metrics (23)
 *   osseg_queue_depth{priority}                   gauge      queue_depths (24),
 *                                                            else queue_depth (3)
 *   osseg_requests_in_flight                      gauge      in_flight (25)
 *   osseg_connections                             gauge      connections (4)
 *   osseg_connections_total                       counter    connections_total (5)
 *   osseg_refused_peers_total                     counter    refused_peers (9)
 *   osseg_audit_errors_total                      counter    audit_errors (10)
 *   osseg_received_bytes_total                    counter    bytes_in (6)
 *   osseg_sent_bytes_total                        counter    bytes_out (7)
 *   osseg_model_load_seconds{model}               gauge      model_metrics (23)
 *   osseg_model_warmup_seconds{model}             gauge      model_metrics (23)
 *   osseg_model_reloads_total{model}              counter    model_metrics (23)
 *   osseg_start_time_seconds                      gauge      start_time_s (26)
 *   osseg_uptime_seconds                          gauge      uptime_s (27)
 * A family whose optional field is absent (a daemon older than the field)
 * is left out. Field 2 (latency without a sum) and ModelStats' mean and
 * max (8) are not exported: the histograms carry the same information.
 *
 * Every family has its # HELP and # TYPE lines. Label values are escaped
 * (backslash, double quote, line feed). Histogram buckets are cumulative
 * as the message has them, le in seconds, and always end with le="+Inf"
 * (added with the histogram's count if the message has no infinite
 * bound), followed by _sum and _count. Numbers are printed in the shortest
 * form that reads back as the same double; printf's %g is used, so the
 * LC_NUMERIC locale must be "C" (neither osseg nor ossegd changes it). */
#ifndef OSSEG_PROMETHEUS_H
#define OSSEG_PROMETHEUS_H

#include <stddef.h>

#include "osseg.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The Content-Type of the format, for anyone serving it over HTTP. */
#define OSSEG_PROMETHEUS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Formats s. Returns 0 with *text (NUL-terminated, *len bytes without the
 * NUL; the caller frees it with osseg__free), or OSSEG_ENOMEM with *text
 * NULL. Allocates through osseg__malloc; thread-safe. */
int osseg_prometheus_format(const Osseg__Wire__Stats *s, char **text, size_t *len);

#ifdef __cplusplus
}
#endif
#endif /* OSSEG_PROMETHEUS_H */
