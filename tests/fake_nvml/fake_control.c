/* The control API of the fake NVML (`fake_*`), called by tests through ctypes. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "fake_state.h"

typedef enum { KIND_UINT, KIND_INT, KIND_ULL } fake_kind_t;

typedef struct {
    const char *key;
    size_t offset;
    fake_kind_t kind;
} fake_key_t;

#define FAKE_KEY(key, member, kind) {key, offsetof(fake_device_t, member), kind}
static const fake_key_t value_keys[] = {
    FAKE_KEY("temperature_c", temperature_c, KIND_UINT),
    FAKE_KEY("margin_c", margin_c, KIND_INT),
    FAKE_KEY("power_mw", power_mw, KIND_UINT),
    FAKE_KEY("enforced_limit_mw", enforced_limit_mw, KIND_UINT),
    FAKE_KEY("default_limit_mw", default_limit_mw, KIND_UINT),
    FAKE_KEY("min_limit_mw", min_limit_mw, KIND_UINT),
    FAKE_KEY("max_limit_mw", max_limit_mw, KIND_UINT),
    FAKE_KEY("energy_mj", energy_mj, KIND_ULL),
    FAKE_KEY("utilization_gpu_pct", utilization.gpu, KIND_UINT),
    FAKE_KEY("utilization_memory_pct", utilization.memory, KIND_UINT),
    FAKE_KEY("memory_total_bytes", memory.total, KIND_ULL),
    FAKE_KEY("memory_free_bytes", memory.free, KIND_ULL),
    FAKE_KEY("memory_used_bytes", memory.used, KIND_ULL),
    FAKE_KEY("sm_clock_mhz", clock_mhz[NVML_CLOCK_SM], KIND_UINT),
    FAKE_KEY("memory_clock_mhz", clock_mhz[NVML_CLOCK_MEM], KIND_UINT),
    FAKE_KEY("max_sm_clock_mhz", max_clock_mhz[NVML_CLOCK_SM], KIND_UINT),
    FAKE_KEY("max_memory_clock_mhz", max_clock_mhz[NVML_CLOCK_MEM], KIND_UINT),
    FAKE_KEY("clock_event_reasons", clock_event_reasons, KIND_ULL),
    FAKE_KEY("pstate", pstate, KIND_INT),
    FAKE_KEY("violation_power_ns", violation_ns[NVML_PERF_POLICY_POWER], KIND_ULL),
    FAKE_KEY("violation_thermal_ns", violation_ns[NVML_PERF_POLICY_THERMAL], KIND_ULL),
    FAKE_KEY("supported_events", supported_events, KIND_ULL),
};

static fake_device_t *device_at(int index) {
    return index >= 0 && index < FAKE_MAX_DEVICES ? &fake_state()->devices[index] : NULL;
}

static int function_index(const char *name) {
    for (int fn = 0; fn < FN_COUNT; fn++)
        if (name != NULL && strcmp(name, fake_function_names[fn]) == 0) return fn;
    return -1;
}

static int row_of(int device) { return device < 0 ? FAKE_GLOBAL_ROW : device; }

unsigned long long fake_state_size(void) { return sizeof(fake_state_t); }

void fake_reset(void) { fake_reset_state(fake_state()); }

int fake_set_device_count(unsigned int count) {
    if (count > FAKE_MAX_DEVICES) return -1;
    __atomic_store_n(&fake_state()->device_count, count, __ATOMIC_RELEASE);
    return 0;
}

int fake_set_driver_version(const char *version) {
    fake_state_t *s = fake_state();
    if (version == NULL || strlen(version) >= sizeof(s->driver_version)) return -1;
    snprintf(s->driver_version, sizeof(s->driver_version), "%s", version);
    return 0;
}

int fake_set_identity(int device, const char *name, const char *uuid, const char *pci_bus_id) {
    fake_device_t *d = device_at(device);
    if (d == NULL || name == NULL || uuid == NULL || pci_bus_id == NULL) return -1;
    if (strlen(name) >= sizeof(d->name) || strlen(uuid) >= sizeof(d->uuid) ||
        strlen(pci_bus_id) >= sizeof(d->pci_bus_id))
        return -1;
    snprintf(d->name, sizeof(d->name), "%s", name);
    snprintf(d->uuid, sizeof(d->uuid), "%s", uuid);
    snprintf(d->pci_bus_id, sizeof(d->pci_bus_id), "%s", pci_bus_id);
    return 0;
}

int fake_set_value(int device, const char *key, long long value) {
    fake_device_t *d = device_at(device);
    for (size_t k = 0; d != NULL && key != NULL && k < sizeof(value_keys) / sizeof(value_keys[0]); k++) {
        if (strcmp(key, value_keys[k].key) != 0) continue;
        char *at = (char *)d + value_keys[k].offset;
        if (value_keys[k].kind == KIND_UINT) __atomic_store_n((unsigned int *)at, (unsigned int)value, __ATOMIC_RELEASE);
        if (value_keys[k].kind == KIND_INT) __atomic_store_n((int *)at, (int)value, __ATOMIC_RELEASE);
        if (value_keys[k].kind == KIND_ULL)
            __atomic_store_n((unsigned long long *)at, (unsigned long long)value, __ATOMIC_RELEASE);
        return 0;
    }
    return -1;
}

int fake_set_threshold(int device, int threshold, unsigned int value_c, int rc) {
    fake_device_t *d = device_at(device);
    if (d == NULL || threshold < 0 || threshold >= NVML_TEMPERATURE_THRESHOLD_COUNT) return -1;
    d->thresholds_c[threshold] = value_c;
    d->threshold_rc[threshold] = rc;
    return 0;
}

/* A field answers `value` (its bits as a long long, or `dvalue` for doubles) with NVML_SUCCESS. */
int fake_set_field(int device, unsigned int field_id, int value_type, long long value, double dvalue) {
    fake_device_t *d = device_at(device);
    if (d == NULL || field_id >= FAKE_FIELD_IDS) return -1;
    fake_field_t *field = &d->fields[field_id];
    field->value_type = value_type;
    switch (value_type) {
        case NVML_VALUE_TYPE_DOUBLE: field->value.dVal = dvalue; break;
        case NVML_VALUE_TYPE_UNSIGNED_INT: field->value.uiVal = (unsigned int)value; break;
        case NVML_VALUE_TYPE_UNSIGNED_LONG: field->value.ulVal = (unsigned long)value; break;
        case NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: field->value.ullVal = (unsigned long long)value; break;
        case NVML_VALUE_TYPE_SIGNED_LONG_LONG: field->value.sllVal = value; break;
        case NVML_VALUE_TYPE_SIGNED_INT: field->value.siVal = (int)value; break;
        case NVML_VALUE_TYPE_UNSIGNED_SHORT: field->value.usVal = (unsigned short)value; break;
        default: return -1;
    }
    __atomic_store_n(&field->rc, NVML_SUCCESS, __ATOMIC_RELEASE);
    return 0;
}

int fake_set_field_return(int device, unsigned int field_id, int rc) {
    fake_device_t *d = device_at(device);
    if (d == NULL || field_id >= FAKE_FIELD_IDS) return -1;
    __atomic_store_n(&d->fields[field_id].rc, rc, __ATOMIC_RELEASE);
    return 0;
}

long long fake_field_requests(int device, unsigned int field_id) {
    fake_device_t *d = device_at(device);
    if (d == NULL || field_id >= FAKE_FIELD_IDS) return -1;
    return (long long)__atomic_load_n(&d->fields[field_id].requests, __ATOMIC_ACQUIRE);
}

/* `device` -1 names the calls that take no device (init, count, events). */
int fake_set_return(int device, const char *function, int rc) {
    int fn = function_index(function);
    if (fn < 0 || device >= FAKE_MAX_DEVICES) return -1;
    __atomic_store_n(&fake_state()->function_rc[row_of(device)][fn], rc, __ATOMIC_RELEASE);
    return 0;
}

int fake_set_device_return(int device, int rc) {
    fake_device_t *d = device_at(device);
    if (d == NULL) return -1;
    __atomic_store_n(&d->device_rc, rc, __ATOMIC_RELEASE);
    return 0;
}

void fake_set_global_return(int rc) { __atomic_store_n(&fake_state()->global_rc, rc, __ATOMIC_RELEASE); }

void fake_set_init_return(int rc) { __atomic_store_n(&fake_state()->init_rc, rc, __ATOMIC_RELEASE); }

int fake_block(int device, const char *function, int blocked) {
    int fn = function_index(function);
    if (fn < 0 || device >= FAKE_MAX_DEVICES) return -1;
    __atomic_store_n(&fake_state()->blocked[row_of(device)][fn], blocked, __ATOMIC_RELEASE);
    return 0;
}

void fake_release_all(void) {
    fake_state_t *s = fake_state();
    for (int row = 0; row < FAKE_ROWS; row++)
        for (int fn = 0; fn < FN_COUNT; fn++) __atomic_store_n(&s->blocked[row][fn], 0, __ATOMIC_RELEASE);
}

long long fake_calls(int device, const char *function) {
    int fn = function_index(function);
    if (fn < 0 || device >= FAKE_MAX_DEVICES) return -1;
    return (long long)__atomic_load_n(&fake_state()->calls[row_of(device)][fn], __ATOMIC_ACQUIRE);
}

int fake_inject_xid(int device, unsigned long long xid, unsigned int count) {
    if (device < 0 || device >= FAKE_MAX_DEVICES) return -1;
    fake_state_t *s = fake_state();
    fake_lock_ring(s);
    for (unsigned int i = 0; i < count; i++) {
        s->xids[s->xids_written % FAKE_XID_CAPACITY] = (fake_xid_t){(unsigned int)device, xid};
        s->xids_written++;
    }
    fake_unlock_ring(s);
    return 0;
}

unsigned long long fake_xid_capacity(void) { return FAKE_XID_CAPACITY; }

int fake_is_old_driver(void) {
#ifdef FAKE_NVML_OLD_DRIVER
    return 1;
#else
    return 0;
#endif
}
