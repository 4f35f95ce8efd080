/* colonnade._libc: the two C library calls a worker makes at start-up,
 * the eventfd write and read that wake an event loop from another thread, and
 * the master's three inotify calls (config/inotify.py's watch of the
 * configuration files).
 *
 * Built with the compiled modules (setup.py); the pure-Python build reaches the
 * same functions through ctypes (pools/sandbox.py) and os.eventfd_write/read.
 * Why a module of its own: ctypes costs a worker ~0.4 MiB of RSS (its Python
 * package, _ctypes and libffi) for two calls made once, prctl(PR_SET_PDEATHSIG)
 * and glibc's malloc_trim. The eventfd pair is here because every worker loads
 * this module anyway (no shared object more per worker); see eventfd_write_doc.
 * The inotify calls and the shared memory's first mutex are here for the same
 * reason in the master, which loads this module too: through ctypes they cost an
 * idle master ~0.4 MiB.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#ifdef __linux__
#include <sys/inotify.h>
#include <sys/prctl.h>
#endif
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdint.h>
#include <string.h>
#include <unistd.h>

PyDoc_STRVAR(die_with_parent_doc,
"die_with_parent(signum)\n--\n\n"
"Ask the kernel for signal signum when the parent process dies (Linux's\n"
"PR_SET_PDEATHSIG); False where the system has no such request.");

/* A Python int from 0 to high in *out: 0, else -1 with an exception set (what:
 * what the number is, for the ValueError's message). */
static int
in_range(PyObject *arg, long high, const char *what, long *out)
{
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < 0 || value > high) {
        PyErr_Format(PyExc_ValueError, "%s out of range: %ld", what, value);
        return -1;
    }
    *out = value;
    return 0;
}

static PyObject *
die_with_parent(PyObject *module, PyObject *arg)
{
    long signum;
    if (in_range(arg, 64, "signal number", &signum) < 0) {
        return NULL;
    }
#ifdef __linux__
    if (prctl(PR_SET_PDEATHSIG, (unsigned long)signum, 0UL, 0UL, 0UL) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

PyDoc_STRVAR(malloc_trim_doc,
"malloc_trim()\n--\n\n"
"Give the C heap's free pages back to the kernel (glibc's malloc_trim(0));\n"
"None where the C library is not glibc, else whether memory was released.");

static PyObject *
trim(PyObject *module, PyObject *Py_UNUSED(ignored))
{
#ifdef __GLIBC__
    int released;
    Py_BEGIN_ALLOW_THREADS
    released = malloc_trim(0);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(released);
#else
    Py_RETURN_NONE;
#endif
}

/* The eventfd pair: os.eventfd_write and os.eventfd_read, with the GIL held.
 *
 * os's functions release the GIL around the system call, as for any call that
 * may block. These are for a non-blocking eventfd (EFD_NONBLOCK) that an event
 * loop drains (handlers/wsgi/bridge.py's Outbox): the system call never sleeps
 * (a write would only fail with EAGAIN if the counter reached 2**64 - 2, a read
 * of a zero counter fails with EAGAIN at once), so it costs a microsecond or
 * less, less than handing the GIL on and taking it back: each release and
 * reacquire is two more passes through the GIL's functions, and a release lets
 * the other thread (the loop, woken by this very write) take the GIL, so the
 * writer then waits for it to come back. Errors raise OSError as os's do
 * (BlockingIOError for EAGAIN). */

/* A descriptor number from a Python int; -1 with an exception set where it is
 * not one (negative, or not an int). */
static int
descriptor(PyObject *arg)
{
    long fd;
    if (in_range(arg, INT_MAX, "file descriptor", &fd) < 0) {
        return -1;
    }
    return (int)fd;
}

/* The descriptor a METH_FASTCALL function named name takes first, checking it
 * was given want arguments; -1 with an exception set where not. */
static int
leading_descriptor(const char *name, Py_ssize_t want, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, want, nargs);
        return -1;
    }
    return descriptor(args[0]);
}

PyDoc_STRVAR(eventfd_write_doc,
"eventfd_write(fd, value)\n--\n\n"
"Add value to the eventfd counter fd, as os.eventfd_write does, with the GIL\n"
"held: for a non-blocking eventfd only (the system call must not sleep).");

static PyObject *
efd_write(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int fd = leading_descriptor("eventfd_write", 2, args, nargs);
    if (fd < 0) {
        return NULL;
    }
    unsigned long long value = PyLong_AsUnsignedLongLong(args[1]);
    if (value == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    uint64_t counter = (uint64_t)value;
    if (write(fd, &counter, sizeof counter) != (ssize_t)sizeof counter) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(eventfd_read_doc,
"eventfd_read(fd)\n--\n\n"
"Read and reset the eventfd counter fd, as os.eventfd_read does, with the GIL\n"
"held: for a non-blocking eventfd only (BlockingIOError where it is zero).");

static PyObject *
efd_read(PyObject *module, PyObject *arg)
{
    int fd = descriptor(arg);
    if (fd < 0) {
        return NULL;
    }
    uint64_t counter;
    if (read(fd, &counter, sizeof counter) != (ssize_t)sizeof counter) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)counter);
}

/* inotify: what config/inotify.py calls. Each raises OSError with the call's
 * errno where it fails (ENOSYS where the system has no inotify). */

#ifndef __linux__
#define inotify_init1(flags) (errno = ENOSYS, -1)
#define inotify_add_watch(fd, path, mask) (errno = ENOSYS, -1)
#define inotify_rm_watch(fd, wd) (errno = ENOSYS, -1)
#endif

/* A call's answer: the number it returned, or OSError where it returned -1. */
static PyObject *
number_or_error(int result)
{
    if (result < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(result);
}

PyDoc_STRVAR(inotify_init1_doc,
"inotify_init1(flags)\n--\n\n"
"A new inotify instance's descriptor (Linux's inotify_init1).");

static PyObject *
ino_init1(PyObject *module, PyObject *arg)
{
    long flags;
    if (in_range(arg, INT_MAX, "flags", &flags) < 0) {
        return NULL;
    }
    return number_or_error(inotify_init1((int)flags));
}

PyDoc_STRVAR(inotify_add_watch_doc,
"inotify_add_watch(fd, path, mask)\n--\n\n"
"Watch path (bytes) for the events in mask; the watch descriptor.");

static PyObject *
ino_add_watch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int fd = leading_descriptor("inotify_add_watch", 3, args, nargs);
    if (fd < 0) {
        return NULL;
    }
    if (!PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "inotify_add_watch(): path must be bytes");
        return NULL;
    }
    const char *path = PyBytes_AS_STRING(args[1]);
    if (strlen(path) != (size_t)PyBytes_GET_SIZE(args[1])) {
        PyErr_SetString(PyExc_ValueError, "inotify_add_watch(): embedded null byte");
        return NULL;
    }
    unsigned long mask = PyLong_AsUnsignedLong(args[2]);
    if (mask == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (mask > UINT32_MAX) {
        PyErr_Format(PyExc_ValueError, "mask out of range: %lu", mask);
        return NULL;
    }
    int wd;
    Py_BEGIN_ALLOW_THREADS
    wd = inotify_add_watch(fd, path, (uint32_t)mask);
    Py_END_ALLOW_THREADS
    return number_or_error(wd);
}

PyDoc_STRVAR(inotify_rm_watch_doc,
"inotify_rm_watch(fd, wd)\n--\n\n"
"Stop the watch wd of the inotify instance fd.");

static PyObject *
ino_rm_watch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int fd = leading_descriptor("inotify_rm_watch", 2, args, nargs);
    long wd;
    if (fd < 0 || in_range(args[1], INT_MAX, "watch descriptor", &wd) < 0) {
        return NULL;
    }
    if (inotify_rm_watch(fd, (int)wd) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(robust_mutex_init_doc,
"robust_mutex_init(buffer, offset)\n--\n\n"
"Make the bytes at offset of the writable buffer a robust, process-shared\n"
"pthread mutex (core/shared.py's arena: its creator initialises its lock).");

static PyObject *
mutex_init(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "robust_mutex_init() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[1]);
    if (offset == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    char *at = NULL;
    if (offset >= 0 && offset <= view.len - (Py_ssize_t)sizeof(pthread_mutex_t)) {
        at = (char *)view.buf + offset;
    }
    if (at == NULL || (uintptr_t)at % _Alignof(pthread_mutex_t) != 0) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "no aligned mutex fits at offset %zd", offset);
        return NULL;
    }
    pthread_mutexattr_t attr;
    int code = pthread_mutexattr_init(&attr);
    if (code == 0) {
        code = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
        if (code == 0) {
            code = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
        }
        if (code == 0) {
            code = pthread_mutex_init((pthread_mutex_t *)at, &attr);
        }
        pthread_mutexattr_destroy(&attr);
    }
    PyBuffer_Release(&view);
    if (code != 0) {
        errno = code;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"die_with_parent", die_with_parent, METH_O, die_with_parent_doc},
    {"malloc_trim", trim, METH_NOARGS, malloc_trim_doc},
    {"eventfd_write", (PyCFunction)(void (*)(void))efd_write, METH_FASTCALL, eventfd_write_doc},
    {"eventfd_read", efd_read, METH_O, eventfd_read_doc},
    {"inotify_init1", ino_init1, METH_O, inotify_init1_doc},
    {"inotify_add_watch", (PyCFunction)(void (*)(void))ino_add_watch, METH_FASTCALL,
     inotify_add_watch_doc},
    {"inotify_rm_watch", (PyCFunction)(void (*)(void))ino_rm_watch, METH_FASTCALL,
     inotify_rm_watch_doc},
    {"robust_mutex_init", (PyCFunction)(void (*)(void))mutex_init, METH_FASTCALL,
     robust_mutex_init_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot slots[] = {
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "colonnade._libc",
    .m_doc = "prctl(PR_SET_PDEATHSIG) and malloc_trim for a worker, without ctypes;\n"
             "eventfd_write and eventfd_read with the GIL held; inotify's calls;\n"
             "a robust, process-shared mutex's initialisation.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__libc(void)
{
    return PyModuleDef_Init(&module);
}
