/* XID events of the fake NVML: event sets read a bounded ring of injected events in shared state. */
#include <stdlib.h>

#include "fake_state.h"

nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    nvmlReturn_t rc = fake_enter_global(FN_nvmlEventSetCreate);
    if (rc != NVML_SUCCESS) return rc;
    if (set == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    struct nvmlEventSet_st *created = calloc(1, sizeof(*created));
    if (created == NULL) return NVML_ERROR_MEMORY;
    fake_state_t *s = fake_state();
    fake_lock_ring(s);
    created->cursor = s->xids_written; /* a set sees only events raised after it exists */
    fake_unlock_ring(s);
    *set = created;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long eventTypes, nvmlEventSet_t set) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceRegisterEvents, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (set == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if ((eventTypes & ~d->supported_events) != 0) return NVML_ERROR_NOT_SUPPORTED;
    set->masks[device->index] |= eventTypes;
    return NVML_SUCCESS;
}

static int next_event(fake_state_t *s, nvmlEventSet_t set, nvmlEventData_t *data) {
    int found = 0;
    fake_lock_ring(s);
    if (s->xids_written - set->cursor > FAKE_XID_CAPACITY) set->cursor = s->xids_written - FAKE_XID_CAPACITY;
    while (!found && set->cursor < s->xids_written) {
        fake_xid_t event = s->xids[set->cursor % FAKE_XID_CAPACITY];
        set->cursor++;
        if (event.device < FAKE_MAX_DEVICES && (set->masks[event.device] & nvmlEventTypeXidCriticalError)) {
            data->device = &fake_handles[event.device];
            data->eventType = nvmlEventTypeXidCriticalError;
            data->eventData = event.xid;
            data->gpuInstanceId = 0xFFFFFFFFu;
            data->computeInstanceId = 0xFFFFFFFFu;
            found = 1;
        }
    }
    fake_unlock_ring(s);
    return found;
}

nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms) {
    nvmlReturn_t rc = fake_enter_global(FN_nvmlEventSetWait_v2);
    if (rc != NVML_SUCCESS) return rc;
    if (set == NULL || data == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long deadline = fake_now_ms() + timeoutms;
    for (;;) {
        if (next_event(fake_state(), set, data)) return NVML_SUCCESS;
        if (fake_now_ms() >= deadline) return NVML_ERROR_TIMEOUT;
        fake_sleep_ms(1);
    }
}

nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    nvmlReturn_t rc = fake_enter_global(FN_nvmlEventSetFree);
    if (rc != NVML_SUCCESS) return rc;
    free(set);
    return NVML_SUCCESS;
}

