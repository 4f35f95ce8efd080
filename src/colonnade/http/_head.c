/* colonnade.http._head: one client request head read in C, on HTTP/1.1's common
 * path (http/h1.py's HTTP1Connection.feed; its module docstring says how).
 *
 * Built with the compiled modules (setup.py); the pure-Python build, and any
 * build where this module is absent, hands every feed to llhttp as before. Why
 * C: a feed that is one request head costs ~4,500 instructions in llhttp and
 * its callbacks into Python (httptools makes a bytes object per piece and calls
 * a Python method per piece); here the head is read in one pass of a few
 * instructions a byte, and h1.py runs the callbacks' own checks on what it
 * gives back.
 *
 * read_head(data) answers (method, target, fields) for a feed that is exactly
 * one request head under the grammar below, where llhttp, fed the same bytes at
 * a message boundary, reports the same method, target and fields (``fields``:
 * a flat tuple, name, value, name, value, ..., of the pairs httptools' on_header
 * gets: each name as received, each value without its leading SP and HTAB, its
 * trailing ones kept; flat, not a pair each: a tuple less per field), raises no
 * error of its own, completes the message at the head's end (no body) and
 * leaves everything else to the callbacks. Anything else is None, and the feed
 * goes to llhttp. The grammar is deliberately narrower than llhttp's: every
 * refusal is safe, an acceptance must be exact.
 *
 *   head    = method SP target SP version CRLF *( field CRLF ) CRLF, and then
 *             the end of the data (nothing pipelined behind it)
 *   method  = "GET" / "HEAD" / "POST" / "PUT" / "DELETE" / "OPTIONS" / "PATCH"
 *             (methods llhttp knows for HTTP; none of them means "not HTTP"
 *             with version 1.0, nor CONNECT, which llhttp takes for an upgrade)
 *   target  = "/" *( %x21-7E but "#" )     origin-form: what llhttp's URL
 *             states take there (a fragment goes the general way, to its 400)
 *   version = "HTTP/1.1" / "HTTP/1.0"
 *   field   = token ":" *( SP / HTAB ) value, value = *( HTAB / %x20-7E / %x80-FF )
 *             (what llhttp takes in a value: no CTL, no DEL, no bare CR or LF;
 *             a line starting with SP or HTAB, obs-fold, is no token)
 *
 * and at most MAX_FIELDS fields, none of them named (in any case) one of those
 * llhttp reads itself: Content-Length, Transfer-Encoding (a body, and llhttp's
 * own checks of both), Connection, Proxy-Connection (keep-alive and upgrade
 * flags), Upgrade. With none of those, llhttp's verdicts are known without it:
 * no body, no upgrade, kept alive if and only if HTTP/1.1 (h1.py decides so for
 * such a head whichever way it was read).
 *
 * Every read is of data[i] with i < size, checked before the read; the data is
 * never written. The method objects and some common field names are made once
 * (and their hashes then cached); everything else is a new bytes object.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Byte classes, one bit each. */
#define C_TCHAR 1  /* RFC 9110 tchar: a field name's byte */
#define C_TARGET 2 /* a target's byte after its "/" */
#define C_VALUE 4  /* a field value's byte */
static unsigned char CLASS[256];

/* More fields than this: the general way (which counts them against the
 * connection's own limit). Only a bound on this function's work per call. */
#define MAX_FIELDS 128

static void
fill_tables(void)
{
    const char *tchars =
        "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (const char *p = tchars; *p; p++) {
        CLASS[(unsigned char)*p] |= C_TCHAR;
    }
    for (int c = 0x21; c <= 0x7E; c++) {
        if (c != '#') {
            CLASS[c] |= C_TARGET;
        }
    }
    CLASS['\t'] |= C_VALUE;
    for (int c = 0x20; c <= 0x7E; c++) {
        CLASS[c] |= C_VALUE;
    }
    for (int c = 0x80; c <= 0xFF; c++) {
        CLASS[c] |= C_VALUE;
    }
}

typedef struct {
    const char *text;
    Py_ssize_t size;
    PyObject *object; /* bytes, made at import */
} Known;

static Known methods[] = {
    {"GET", 3, NULL},    {"HEAD", 4, NULL},    {"POST", 4, NULL},  {"PUT", 3, NULL},
    {"DELETE", 6, NULL}, {"OPTIONS", 7, NULL}, {"PATCH", 5, NULL},
};
#define METHOD_COUNT (sizeof(methods) / sizeof(methods[0]))

/* Field names as clients commonly spell them: the same object handed out each
 * time (no allocation, and its hash, which h1.py's look-up by name needs, made
 * once). Matched exactly, case included: any other spelling is a new object. */
static Known names[] = {
    {"Host", 4, NULL},
    {"host", 4, NULL},
    {"User-Agent", 10, NULL},
    {"user-agent", 10, NULL},
    {"Accept", 6, NULL},
    {"accept", 6, NULL},
    {"Accept-Encoding", 15, NULL},
    {"accept-encoding", 15, NULL},
    {"Accept-Language", 15, NULL},
    {"accept-language", 15, NULL},
    {"Cookie", 6, NULL},
    {"cookie", 6, NULL},
    {"Referer", 7, NULL},
    {"referer", 7, NULL},
    {"Cache-Control", 13, NULL},
    {"If-None-Match", 13, NULL},
    {"If-Modified-Since", 17, NULL},
    {"Authorization", 13, NULL},
    {"X-Forwarded-For", 15, NULL},
    {"Origin", 6, NULL},
};
#define NAME_COUNT (sizeof(names) / sizeof(names[0]))

/* Field names llhttp reads itself (lower case): a head with one is refused. */
static const Known refused[] = {
    {"content-length", 14, NULL}, {"transfer-encoding", 17, NULL}, {"connection", 10, NULL},
    {"proxy-connection", 16, NULL}, {"upgrade", 7, NULL},
};
#define REFUSED_COUNT (sizeof(refused) / sizeof(refused[0]))

static int
make_known(Known *table, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (table[i].object == NULL) {
            table[i].object = PyBytes_FromStringAndSize(table[i].text, table[i].size);
            if (table[i].object == NULL) {
                return -1;
            }
            (void)PyObject_Hash(table[i].object); /* cached on the object */
        }
    }
    return 0;
}

/* Whether name[0:size] is one of ``refused``, in any case. */
static int
is_refused(const unsigned char *name, Py_ssize_t size)
{
    for (size_t i = 0; i < REFUSED_COUNT; i++) {
        const char *lower = refused[i].text;
        if (refused[i].size != size) {
            continue;
        }
        Py_ssize_t k = 0;
        while (k < size) {
            unsigned char c = name[k];
            if (c >= 'A' && c <= 'Z') {
                c = (unsigned char)(c + 32);
            }
            if (c != (unsigned char)lower[k]) {
                break;
            }
            k++;
        }
        if (k == size) {
            return 1;
        }
    }
    return 0;
}

/* A new reference to the bytes of name[0:size]: a known one, or a new object. */
static PyObject *
name_object(const unsigned char *name, Py_ssize_t size)
{
    for (size_t i = 0; i < NAME_COUNT; i++) {
        if (names[i].size == size && memcmp(names[i].text, name, (size_t)size) == 0) {
            Py_INCREF(names[i].object);
            return names[i].object;
        }
    }
    return PyBytes_FromStringAndSize((const char *)name, size);
}

/* The length of the request line's method and its object, or 0 (none of ours,
 * or not followed by SP). */
static Py_ssize_t
match_method(const unsigned char *p, Py_ssize_t size, PyObject **object)
{
    for (size_t i = 0; i < METHOD_COUNT; i++) {
        Py_ssize_t n = methods[i].size;
        if (n < size && p[n] == ' ' && memcmp(methods[i].text, p, (size_t)n) == 0) {
            *object = methods[i].object;
            return n;
        }
    }
    return 0;
}

PyDoc_STRVAR(read_head_doc,
             "read_head(data, /)\n--\n\n"
             "(method, target, fields) of a feed that is one request head llhttp reads\n"
             "the same way, under a narrower grammar (see http/_head.c); else None.");

static PyObject *
read_head(PyObject *module, PyObject *data)
{
    (void)module;
    if (!PyBytes_CheckExact(data)) {
        Py_RETURN_NONE;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(data);
    const Py_ssize_t size = PyBytes_GET_SIZE(data);
    /* The shortest head: "GET / HTTP/1.1" CRLF CRLF. */
    if (size < 18) {
        Py_RETURN_NONE;
    }
    PyObject *method = NULL;
    Py_ssize_t pos = match_method(p, size, &method);
    if (pos == 0) {
        Py_RETURN_NONE;
    }
    pos++; /* the SP */
    const Py_ssize_t target_start = pos;
    if (pos >= size || p[pos] != '/') {
        Py_RETURN_NONE;
    }
    pos++;
    while (pos < size && (CLASS[p[pos]] & C_TARGET)) {
        pos++;
    }
    const Py_ssize_t target_end = pos;
    /* SP "HTTP/1." ("1" / "0") CR LF: 11 bytes. */
    if (size - pos < 11 || memcmp(p + pos, " HTTP/1.", 8) != 0 ||
        (p[pos + 8] != '1' && p[pos + 8] != '0') || p[pos + 9] != '\r' || p[pos + 10] != '\n') {
        Py_RETURN_NONE;
    }
    pos += 11;

    /* Where each field's name and value lie: found first, objects made after, so
     * that a refusal late in the head costs no allocation. */
    Py_ssize_t spans[MAX_FIELDS][4];
    Py_ssize_t count = 0;
    for (;;) {
        if (pos >= size) {
            Py_RETURN_NONE; /* the head goes on in a later feed */
        }
        if (p[pos] == '\r') {
            /* The empty line: the head's end, which must be the data's. */
            if (pos + 2 != size || p[pos + 1] != '\n') {
                Py_RETURN_NONE;
            }
            break;
        }
        if (count == MAX_FIELDS) {
            Py_RETURN_NONE;
        }
        const Py_ssize_t name_start = pos;
        while (pos < size && (CLASS[p[pos]] & C_TCHAR)) {
            pos++;
        }
        const Py_ssize_t name_end = pos;
        if (name_end == name_start || pos >= size || p[pos] != ':') {
            Py_RETURN_NONE; /* no name, a byte that is no tchar, or no colon */
        }
        if (is_refused(p + name_start, name_end - name_start)) {
            Py_RETURN_NONE;
        }
        pos++;
        while (pos < size && (p[pos] == ' ' || p[pos] == '\t')) {
            pos++;
        }
        const Py_ssize_t value_start = pos;
        while (pos < size && (CLASS[p[pos]] & C_VALUE)) {
            pos++;
        }
        /* The value ends at CR LF; any other byte (a CTL, DEL, a lone CR or LF) or
         * the data's end: the general way. */
        if (size - pos < 2 || p[pos] != '\r' || p[pos + 1] != '\n') {
            Py_RETURN_NONE;
        }
        spans[count][0] = name_start;
        spans[count][1] = name_end;
        spans[count][2] = value_start;
        spans[count][3] = pos;
        count++;
        pos += 2;
    }

    PyObject *fields = PyTuple_New(2 * count);
    if (fields == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name = name_object(p + spans[i][0], spans[i][1] - spans[i][0]);
        if (name == NULL) {
            Py_DECREF(fields);
            return NULL;
        }
        PyTuple_SET_ITEM(fields, 2 * i, name);
        PyObject *value =
            PyBytes_FromStringAndSize((const char *)p + spans[i][2], spans[i][3] - spans[i][2]);
        if (value == NULL) {
            Py_DECREF(fields);
            return NULL;
        }
        PyTuple_SET_ITEM(fields, 2 * i + 1, value);
    }
    PyObject *target = PyBytes_FromStringAndSize((const char *)p + target_start,
                                                 target_end - target_start);
    if (target == NULL) {
        Py_DECREF(fields);
        return NULL;
    }
    PyObject *result = PyTuple_New(3);
    if (result == NULL) {
        Py_DECREF(target);
        Py_DECREF(fields);
        return NULL;
    }
    Py_INCREF(method);
    PyTuple_SET_ITEM(result, 0, method);
    PyTuple_SET_ITEM(result, 1, target);
    PyTuple_SET_ITEM(result, 2, fields);
    return result;
}

static PyMethodDef module_methods[] = {
    {"read_head", (PyCFunction)read_head, METH_O, read_head_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "colonnade.http._head",
    .m_doc = "One client request head read in C (see http/_head.c).",
    .m_size = 0,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__head(void)
{
    fill_tables();
    if (make_known(methods, METHOD_COUNT) < 0 || make_known(names, NAME_COUNT) < 0) {
        return NULL;
    }
    return PyModuleDef_Init(&module);
}
