/* colonnade.handlers.proxy._fields: the field lines of an upstream's response
 * head, split and checked in one pass (handlers/proxy/wire.py's _header_lines).
 *
 * Built with the compiled modules (setup.py); the pure-Python build, and any
 * build where this module is absent, runs the same loop in Python
 * (wire._header_lines_py). Why C: compiled by mypyc, that loop indexes the head
 * byte by byte (~10 instructions a byte with its range checks) after a
 * translate of the whole head, ~4,500 instructions for a 4-field head; here the
 * loop is a few instructions a byte and what is left is making the objects.
 *
 * header_lines(raw, start, size) answers exactly what the Python loop answers:
 * the list of (name in lower case, value without leading and trailing SP and
 * HTAB) of the field lines from ``start`` to the blank line that ends the head
 * (``raw[:size]`` ends with it), and whether every line is already as the
 * HTTP/1 writer would write that field (``name: value``: the name in lower
 * case, one SP, a value not empty, nothing after it); or None where the loop
 * gives up (a name that is no token, a CR, LF or NUL out of place), and the
 * caller's slower check then finds the line to blame.
 *
 * join(parts) is b"".join(parts) for a list of bytes, the proxy's request head
 * (forward.outgoing): ~400 instructions fewer for its usual eight parts.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* A tchar (RFC 9110 5.6.2) in lower case, ':' kept, any other byte 0. */
static unsigned char NAME[256];
/* 1 for a tchar that is no upper-case letter (a name's byte as the writer writes
 * it), else 0: the names' fast loop. */
static unsigned char LOWER[256];
/* 1 for the bytes that end a value's scan: CR (its end), LF and NUL (refused). */
static unsigned char STOP[256];

static void
fill_name_table(void)
{
    const char *tchars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz";
    for (const char *p = tchars; *p; p++) {
        NAME[(unsigned char)*p] = (unsigned char)*p;
        LOWER[(unsigned char)*p] = 1;
    }
    for (int c = 'A'; c <= 'Z'; c++) {
        NAME[c] = (unsigned char)(c + 32);
    }
    NAME[':'] = ':';
    STOP['\r'] = STOP['\n'] = STOP[0] = 1;
}

/* The arguments: bytes, then two integers. */
/* Field names most responses carry, in lower case: one bytes object each, made
 * (and hashed) once, and handed out again for each head that names the field,
 * in place of a new object per field: no allocation, and the hash a dict look-up
 * of the field (the HTTP/1 writer's head shapes) needs is already there. A fixed
 * list, not a memo: what an upstream sends never changes it. */
static const char *const KNOWN[] = {
    "date", "server", "content-type", "content-length", "connection", "keep-alive",
    "transfer-encoding", "cache-control", "vary", "etag", "last-modified", "expires",
    "location", "set-cookie", "content-encoding", "accept-ranges", "age", "pragma",
};
#define KNOWN_COUNT (sizeof(KNOWN) / sizeof(KNOWN[0]))
static PyObject *known_names[KNOWN_COUNT];
static Py_ssize_t known_sizes[KNOWN_COUNT];

static int
fill_known_names(void)
{
    for (size_t i = 0; i < KNOWN_COUNT; i++) {
        if (known_names[i] != NULL) {
            continue; /* (a second import of the module) */
        }
        PyObject *name = PyBytes_FromString(KNOWN[i]);
        if (name == NULL || PyObject_Hash(name) == -1) {
            Py_XDECREF(name);
            return -1;
        }
        known_names[i] = name; /* kept for the process's life */
        known_sizes[i] = PyBytes_GET_SIZE(name);
    }
    return 0;
}

/* The known name ``lowered`` (``size`` bytes, lower case), a new reference; NULL
 * (no exception set) when it is not one. */
static PyObject *
known_name(const unsigned char *lowered, Py_ssize_t size)
{
    for (size_t i = 0; i < KNOWN_COUNT; i++) {
        if (known_sizes[i] == size && known_names[i] != NULL
            && memcmp(PyBytes_AS_STRING(known_names[i]), lowered, (size_t)size) == 0) {
            Py_INCREF(known_names[i]);
            return known_names[i];
        }
    }
    return NULL;
}

static int
bytes_and_two_sizes(const char *name, PyObject *const *args, Py_ssize_t nargs,
                    Py_ssize_t *first, Py_ssize_t *second)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "%s() takes 3 arguments", name);
        return -1;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "%s(): the first argument must be bytes", name);
        return -1;
    }
    *first = PyLong_AsSsize_t(args[1]);
    if (*first == -1 && PyErr_Occurred()) {
        return -1;
    }
    *second = PyLong_AsSsize_t(args[2]);
    if (*second == -1 && PyErr_Occurred()) {
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(header_lines_doc,
"header_lines(raw, start, size, /)\n--\n\n"
"The fields of the head raw[:size] (which ends with its blank line) whose first\n"
"field line starts at start, as a list of (name in lower case, trimmed value),\n"
"and whether every line is 'name: value' as the HTTP/1 writer writes it (the\n"
"name in lower case, one SP, a value not empty, nothing after it): a pair;\n"
"None where a line is not a valid field line (the caller finds which).");

static PyObject *
header_lines(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t start, size;
    if (bytes_and_two_sizes("header_lines", args, nargs, &start, &size) < 0) {
        return NULL;
    }
    PyObject *raw = args[0];
    Py_ssize_t length = PyBytes_GET_SIZE(raw);
    if (size < 0 || size > length) {
        size = length;
    }
    if (start < 0) {
        Py_RETURN_NONE;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(raw);
    Py_ssize_t last = size - 2; /* the blank line's CR LF */
    /* The head ends with CR LF CR LF: that last CR (checked here, once) ends every
     * scan below before the head's end, so the loops need no bound of their own:
     * a name's scan stops at a CR (no tchar), a value's at one (STOP). */
    if (start < last && (data[last] != '\r' || data[last + 1] != '\n')) {
        Py_RETURN_NONE; /* (0 <= start < last: both bytes are within the head) */
    }
    PyObject *headers = PyList_New(0);
    if (headers == NULL) {
        return NULL;
    }
    Py_ssize_t at = start;
    int canonical = 1;
    unsigned char lowered[256];
    while (at < last) {
        /* The name: tchars up to the colon (a CR, no tchar, ends the search);
         * first the usual bytes, then (an upper-case letter met) any tchar. */
        Py_ssize_t colon = at;
        while (LOWER[data[colon]]) {
            colon++;
        }
        int upper = 0;
        if (data[colon] != ':') {
            for (;;) {
                unsigned char n = NAME[data[colon]];
                if (n == ':') {
                    break;
                }
                if (n == 0) {
                    goto give_up;
                }
                colon++;
            }
            upper = 1; /* (what stopped the fast loop was an upper-case letter) */
        }
        /* The value: up to the CR of CR LF; a lone LF or a NUL is no value. */
        Py_ssize_t end = colon + 1;
        while (!STOP[data[end]]) {
            end++;
        }
        if (data[end] != '\r' || colon == at || data[end + 1] != '\n') {
            goto give_up;
        }
        Py_ssize_t first = colon + 1;
        while (first < end && (data[first] == ' ' || data[first] == '\t')) {
            first++;
        }
        Py_ssize_t stop = end;
        while (stop > first && (data[stop - 1] == ' ' || data[stop - 1] == '\t')) {
            stop--;
        }
        canonical &= !upper && first == colon + 2 && data[colon + 1] == ' ' && stop == end
                     && stop > first;
        Py_ssize_t name_size = colon - at;
        PyObject *name;
        if (!upper) {
            name = known_name(data + at, name_size);
            if (name == NULL) {
                name = PyBytes_FromStringAndSize((const char *)data + at, name_size);
            }
        }
        else if (name_size <= (Py_ssize_t)sizeof(lowered)) {
            for (Py_ssize_t i = 0; i < name_size; i++) {
                lowered[i] = NAME[data[at + i]];
            }
            name = known_name(lowered, name_size);
            if (name == NULL) {
                name = PyBytes_FromStringAndSize((const char *)lowered, name_size);
            }
        }
        else {
            name = PyBytes_FromStringAndSize(NULL, name_size);
            if (name != NULL) {
                unsigned char *out = (unsigned char *)PyBytes_AS_STRING(name);
                for (Py_ssize_t i = 0; i < name_size; i++) {
                    out[i] = NAME[data[at + i]];
                }
            }
        }
        if (name == NULL) {
            goto fail;
        }
        PyObject *value = PyBytes_FromStringAndSize((const char *)data + first, stop - first);
        if (value == NULL) {
            Py_DECREF(name);
            goto fail;
        }
        PyObject *field = PyTuple_New(2);
        if (field == NULL) {
            Py_DECREF(name);
            Py_DECREF(value);
            goto fail;
        }
        PyTuple_SET_ITEM(field, 0, name);
        PyTuple_SET_ITEM(field, 1, value);
        int appended = PyList_Append(headers, field);
        Py_DECREF(field);
        if (appended < 0) {
            goto fail;
        }
        at = end + 2;
    }
    PyObject *pair = PyTuple_New(2);
    if (pair == NULL) {
        goto fail;
    }
    PyTuple_SET_ITEM(pair, 0, headers);
    PyObject *flag = canonical ? Py_True : Py_False;
    Py_INCREF(flag);
    PyTuple_SET_ITEM(pair, 1, flag);
    return pair;

give_up:
    Py_DECREF(headers);
    Py_RETURN_NONE;

fail:
    Py_DECREF(headers);
    return NULL;
}

PyDoc_STRVAR(join_doc,
"join(parts, /)\n--\n\n"
"b''.join(parts) for a list of bytes (the proxy's request head): one allocation\n"
"and a copy of each part, without the buffer protocol's per-part work.");

static PyObject *
join(PyObject *Py_UNUSED(module), PyObject *parts)
{
    if (!PyList_CheckExact(parts)) {
        PyErr_SetString(PyExc_TypeError, "join(): the argument must be a list");
        return NULL;
    }
    /* No Python code runs below: the list cannot change while it is read. */
    Py_ssize_t count = PyList_GET_SIZE(parts);
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *part = PyList_GET_ITEM(parts, i);
        if (!PyBytes_CheckExact(part)) {
            PyErr_SetString(PyExc_TypeError, "join(): every part must be bytes");
            return NULL;
        }
        Py_ssize_t size = PyBytes_GET_SIZE(part);
        if (size > PY_SSIZE_T_MAX - total) {
            PyErr_SetString(PyExc_OverflowError, "join(): the parts are too long");
            return NULL;
        }
        total += size;
    }
    PyObject *joined = PyBytes_FromStringAndSize(NULL, total);
    if (joined == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(joined);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *part = PyList_GET_ITEM(parts, i);
        Py_ssize_t size = PyBytes_GET_SIZE(part);
        memcpy(out, PyBytes_AS_STRING(part), (size_t)size);
        out += size;
    }
    return joined;
}

static PyMethodDef methods[] = {
    {"header_lines", (PyCFunction)(void (*)(void))header_lines, METH_FASTCALL, header_lines_doc},
    {"join", (PyCFunction)join, METH_O, join_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot slots[] = {
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "colonnade.handlers.proxy._fields",
    .m_doc = "The field lines of an upstream's response head, split and checked in C.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__fields(void)
{
    fill_name_table();
    if (fill_known_names() < 0) {
        return NULL;
    }
    return PyModuleDef_Init(&module);
}
