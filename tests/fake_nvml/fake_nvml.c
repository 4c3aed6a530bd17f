/* A fake libnvidia-ml.so.1 for gpuwatch's tests, compiled against NVIDIA's own nvml.h.
 *
 * This file holds the NVML entry points that pynvml resolves for what gpuwatch reads (events are
 * in fake_events.c), with the real signatures, so the compiler checks them against nvml.h. State
 * and the control API tests call through ctypes are in fake_state.c and fake_control.c. Built with
 * -DFAKE_NVML_OLD_DRIVER it plays a driver that predates the newer calls and field ids.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fake_state.h"

#define FAKE_OLD_DRIVER_FIRST_UNKNOWN_FIELD 197 /* an older driver rejects ids it does not know */

static nvmlReturn_t copy_string(char *out, unsigned int length, const char *value) {
    if (out == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(value) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(out, value, strlen(value) + 1);
    return NVML_SUCCESS;
}

/* ------------------------------------------------------------------ library and system */

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    nvmlReturn_t rc = fake_enter(FAKE_GLOBAL_ROW, FN_nvmlInitWithFlags);
    if (rc == NVML_SUCCESS) rc = (nvmlReturn_t)__atomic_load_n(&fake_state()->init_rc, __ATOMIC_ACQUIRE);
    if (rc == NVML_SUCCESS) fake_init_count++;
    return rc;
}

nvmlReturn_t nvmlShutdown(void) {
    nvmlReturn_t rc = fake_enter_global(FN_nvmlShutdown);
    if (rc == NVML_SUCCESS) fake_init_count--;
    return rc;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
        case NVML_SUCCESS: return "Success";
        case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
        case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
        case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
        case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
        case NVML_ERROR_TIMEOUT: return "Timeout";
        case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
        case NVML_ERROR_RESET_REQUIRED: return "GPU requires restart";
        default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    nvmlReturn_t rc = fake_enter_global(FN_nvmlSystemGetDriverVersion);
    return rc != NVML_SUCCESS ? rc : copy_string(version, length, fake_state()->driver_version);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount) {
    nvmlReturn_t rc = fake_enter_global(FN_nvmlDeviceGetCount_v2);
    if (rc != NVML_SUCCESS) return rc;
    if (deviceCount == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *deviceCount = fake_state()->device_count;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    nvmlReturn_t rc = fake_enter_global(FN_nvmlDeviceGetHandleByIndex_v2);
    if (rc != NVML_SUCCESS) return rc;
    if (device == NULL || index >= fake_state()->device_count) return NVML_ERROR_INVALID_ARGUMENT;
    rc = (nvmlReturn_t)fake_state()->devices[index].device_rc;
    if (rc != NVML_SUCCESS) return rc;
    fake_handles[index].index = index;
    *device = &fake_handles[index];
    return NVML_SUCCESS;
}

/* ------------------------------------------------------------------ identity and limits */

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetName, &d);
    return rc != NVML_SUCCESS ? rc : copy_string(name, length, d->name);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetUUID, &d);
    return rc != NVML_SUCCESS ? rc : copy_string(uuid, length, d->uuid);
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetPciInfo_v3, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (pci == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    memset(pci, 0, sizeof(*pci));
    snprintf(pci->busId, sizeof(pci->busId), "%s", d->pci_bus_id);
    unsigned int function = 0;
    sscanf(d->pci_bus_id, "%x:%x:%x.%x", &pci->domain, &pci->bus, &pci->device, &function);
    snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "%04X:%02X:%02X.%X", pci->domain & 0xFFFFu,
             pci->bus & 0xFFu, pci->device & 0x1Fu, function & 0x7u);
    pci->pciDeviceId = 0x233010DE;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t device, nvmlTemperatureThresholds_t thresholdType,
                                               unsigned int *temp) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetTemperatureThreshold, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (temp == NULL || (unsigned int)thresholdType >= NVML_TEMPERATURE_THRESHOLD_COUNT)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (d->threshold_rc[thresholdType] != NVML_SUCCESS) return (nvmlReturn_t)d->threshold_rc[thresholdType];
    *temp = d->thresholds_c[thresholdType];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t device, unsigned int *defaultLimit) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetPowerManagementDefaultLimit, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (defaultLimit == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *defaultLimit = d->default_limit_mw;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t device, unsigned int *minLimit,
                                                          unsigned int *maxLimit) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetPowerManagementLimitConstraints, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (minLimit == NULL || maxLimit == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *minLimit = d->min_limit_mw;
    *maxLimit = d->max_limit_mw;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetMaxClockInfo, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (clock == NULL || (unsigned int)type >= NVML_CLOCK_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
    *clock = d->max_clock_mhz[type];
    return NVML_SUCCESS;
}

/* ------------------------------------------------------------------ per-sample readings */

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, nvmlTemperatureSensors_t sensorType, unsigned int *temp) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetTemperature, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (temp == NULL || sensorType != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    *temp = d->temperature_c;
    return NVML_SUCCESS;
}

#ifndef FAKE_NVML_OLD_DRIVER
nvmlReturn_t nvmlDeviceGetMarginTemperature(nvmlDevice_t device, nvmlMarginTemperature_t *marginTempInfo) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetMarginTemperature, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (marginTempInfo == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (marginTempInfo->version != nvmlMarginTemperature_v1) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    marginTempInfo->marginTemperature = d->margin_c;
    return NVML_SUCCESS;
}
#endif

static void answer_field(fake_device_t *d, nvmlFieldValue_t *value, long long now_us) {
    unsigned int id = value->fieldId;
    value->timestamp = now_us;
    value->latencyUsec = 0;
    if (id >= FAKE_FIELD_IDS) {
        value->nvmlReturn = NVML_ERROR_INVALID_ARGUMENT;
        return;
    }
    fake_field_t *field = &d->fields[id];
    __atomic_fetch_add(&field->requests, 1ULL, __ATOMIC_RELAXED);
#ifdef FAKE_NVML_OLD_DRIVER
    /* Ids the driver knows but cannot serve on this GPU, then ids newer than the driver. */
    if (id >= NVML_FI_DEV_TEMPERATURE_SHUTDOWN_TLIMIT && id <= NVML_FI_DEV_TEMPERATURE_GPU_MAX_TLIMIT) {
        value->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        return;
    }
    if (id >= FAKE_OLD_DRIVER_FIRST_UNKNOWN_FIELD) {
        value->nvmlReturn = NVML_ERROR_INVALID_ARGUMENT;
        return;
    }
#endif
    value->nvmlReturn = (nvmlReturn_t)field->rc;
    if (field->rc == NVML_SUCCESS) {
        value->valueType = (nvmlValueType_t)field->value_type;
        value->value = field->value;
    }
}

nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount, nvmlFieldValue_t *values) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetFieldValues, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (values == NULL || valuesCount <= 0) return NVML_ERROR_INVALID_ARGUMENT;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long now_us = (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
    for (int i = 0; i < valuesCount; i++) answer_field(d, &values[i], now_us);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetPowerUsage, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (power == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *power = d->power_mw;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetEnforcedPowerLimit, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (limit == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *limit = d->enforced_limit_mw;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetTotalEnergyConsumption, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (energy == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *energy = d->energy_mj;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetUtilizationRates, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (utilization == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *utilization = d->utilization;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetMemoryInfo, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (memory == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *memory = d->memory;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetClockInfo, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (clock == NULL || (unsigned int)type >= NVML_CLOCK_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
    *clock = d->clock_mhz[type];
    return NVML_SUCCESS;
}

#ifndef FAKE_NVML_OLD_DRIVER
nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device, unsigned long long *clocksEventReasons) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetCurrentClocksEventReasons, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (clocksEventReasons == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *clocksEventReasons = d->clock_event_reasons;
    return NVML_SUCCESS;
}
#endif

nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device, unsigned long long *clocksThrottleReasons) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetCurrentClocksThrottleReasons, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (clocksThrottleReasons == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *clocksThrottleReasons = d->clock_event_reasons;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t device, nvmlPstates_t *pState) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetPerformanceState, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (pState == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *pState = (nvmlPstates_t)d->pstate;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetViolationStatus(nvmlDevice_t device, nvmlPerfPolicyType_t perfPolicyType,
                                          nvmlViolationTime_t *violTime) {
    fake_device_t *d;
    nvmlReturn_t rc = fake_enter_device(device, FN_nvmlDeviceGetViolationStatus, &d);
    if (rc != NVML_SUCCESS) return rc;
    if (violTime == NULL || (unsigned int)perfPolicyType >= NVML_PERF_POLICY_COUNT) return NVML_ERROR_INVALID_ARGUMENT;
    violTime->referenceTime = fake_now_ms() * 1000ULL;
    violTime->violationTime = d->violation_ns[perfPolicyType];
    return NVML_SUCCESS;
}

