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
 *
 * take(buffer, size) is bytes(buffer[:size]) for a bytearray, what an upstream
 * connection copies out of its pool's read buffer at each read (client.py's
 * buffer_updated): ~250 instructions fewer than a memoryview's tobytes(), whose
 * call parses its keyword argument and goes through the buffer protocol.
 *
 * (An upstream connection's reusable wait for bytes, once here, is core/_taskwait.c's
 * Wait, which the client connection's task waits on too.)
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
 * list, not a memo: what an upstream sends never changes it. The first K_*
 * entries are those response_head decides by. */
static const char *const KNOWN[] = {
    "date", "server", "content-length", "connection", "transfer-encoding",
    "keep-alive", "location", "set-cookie",
    "content-type", "cache-control", "vary", "etag", "last-modified", "expires",
    "content-encoding", "accept-ranges", "age", "pragma",
};
enum { K_DATE, K_SERVER, K_CONTENT_LENGTH, K_CONNECTION, K_TRANSFER_ENCODING,
       K_KEEP_ALIVE, K_LOCATION, K_SET_COOKIE };
#define KNOWN_COUNT (sizeof(KNOWN) / sizeof(KNOWN[0]))
static PyObject *known_names[KNOWN_COUNT];
/* The known names by size: up to BY_SIZE_MAX indexes into KNOWN for each size
 * (-1: no more), so a name is compared only with those of its own size. */
#define SIZE_MAX_KNOWN 24
#define BY_SIZE_MAX 4
static signed char known_by_size[SIZE_MAX_KNOWN + 1][BY_SIZE_MAX];

/* The other fields a proxy changes on the way back (wire._CHANGED: hop-by-hop,
 * or naming the upstream), besides the K_* ones from K_CONNECTION on. */
static const char *const OTHER_CHANGED[] = {
    "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "upgrade", "content-location",
};
#define OTHER_CHANGED_COUNT (sizeof(OTHER_CHANGED) / sizeof(OTHER_CHANGED[0]))

static int
fill_known_names(void)
{
    memset(known_by_size, -1, sizeof(known_by_size));
    for (size_t i = 0; i < KNOWN_COUNT; i++) {
        size_t size = strlen(KNOWN[i]);
        if (size <= SIZE_MAX_KNOWN) {
            for (int k = 0; k < BY_SIZE_MAX; k++) {
                if (known_by_size[size][k] < 0) {
                    known_by_size[size][k] = (signed char)i;
                    break;
                }
            } /* (a fifth name of one size would only be made anew per head) */
        }
        if (known_names[i] != NULL) {
            continue; /* (a second import of the module) */
        }
        PyObject *name = PyBytes_FromString(KNOWN[i]);
        if (name == NULL || PyObject_Hash(name) == -1) {
            Py_XDECREF(name);
            return -1;
        }
        known_names[i] = name; /* kept for the process's life */
    }
    return 0;
}

/* The index in KNOWN of the name ``lowered`` (``size`` bytes, lower case); -1
 * when it is not one. */
static int
known_index(const unsigned char *lowered, Py_ssize_t size)
{
    if (size > SIZE_MAX_KNOWN) {
        return -1;
    }
    const signed char *candidates = known_by_size[size];
    for (int k = 0; k < BY_SIZE_MAX && candidates[k] >= 0; k++) {
        int i = candidates[k];
        if (known_names[i] != NULL
            && memcmp(PyBytes_AS_STRING(known_names[i]), lowered, (size_t)size) == 0) {
            return i;
        }
    }
    return -1;
}

/* One field line from ``at``, in a head whose bytes end, at the latest, with a
 * CR or a NUL that stops every scan (either the head's last CR, checked by the
 * caller, or the NUL every bytes object has after its last byte): the colon,
 * the CR that ends the line, the trimmed value's bounds, and whether the name
 * has an upper-case letter. -1 where it is no valid field line (a name that is
 * no token or empty, a CR not followed by LF, a lone LF or a NUL). */
typedef struct {
    Py_ssize_t colon, end, first, stop;
    int upper;
} line_t;

static int
scan_line(const unsigned char *data, Py_ssize_t at, line_t *line)
{
    /* The name: tchars up to the colon (a CR or NUL, no tchar, ends the
     * search); first the usual bytes, then (an upper-case letter met) any tchar. */
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
                return -1;
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
        return -1;
    }
    Py_ssize_t first = colon + 1;
    while (first < end && (data[first] == ' ' || data[first] == '\t')) {
        first++;
    }
    Py_ssize_t stop = end;
    while (stop > first && (data[stop - 1] == ' ' || data[stop - 1] == '\t')) {
        stop--;
    }
    line->colon = colon;
    line->end = end;
    line->first = first;
    line->stop = stop;
    line->upper = upper;
    return 0;
}

/* Whether ``line`` is as the HTTP/1 writer writes a field: ``name: value``, the
 * name in lower case, one SP, a value not empty, nothing after it. */
static int
written_so(const unsigned char *data, const line_t *line)
{
    return !line->upper && line->first == line->colon + 2 && data[line->colon + 1] == ' '
           && line->stop == line->end && line->stop > line->first;
}

/* The name of the field line at ``at`` in lower case, a new reference (a known
 * name's one object, else a new one); ``index``: its index in KNOWN, -1 if none.
 * NULL with an exception set on failure. */
static PyObject *
line_name(const unsigned char *data, Py_ssize_t at, const line_t *line, int *index)
{
    Py_ssize_t size = line->colon - at;
    unsigned char lowered[256];
    const unsigned char *name = data + at;
    *index = -1;
    if (line->upper) {
        if (size > (Py_ssize_t)sizeof(lowered)) {
            /* Longer than any known name: made in place, in lower case. */
            PyObject *made = PyBytes_FromStringAndSize(NULL, size);
            if (made != NULL) {
                unsigned char *out = (unsigned char *)PyBytes_AS_STRING(made);
                for (Py_ssize_t i = 0; i < size; i++) {
                    out[i] = NAME[data[at + i]];
                }
            }
            return made;
        }
        for (Py_ssize_t i = 0; i < size; i++) {
            lowered[i] = NAME[data[at + i]];
        }
        name = lowered;
    }
    int i = known_index(name, size);
    if (i >= 0) {
        *index = i;
        Py_INCREF(known_names[i]);
        return known_names[i];
    }
    return PyBytes_FromStringAndSize((const char *)name, size);
}

/* Appends (name, value) to ``headers``: takes the references. 0, or -1 with an
 * exception set. */
static int
append_field(PyObject *headers, PyObject *name, PyObject *value)
{
    PyObject *field = PyTuple_New(2);
    if (field == NULL) {
        Py_DECREF(name);
        Py_DECREF(value);
        return -1;
    }
    PyTuple_SET_ITEM(field, 0, name);
    PyTuple_SET_ITEM(field, 1, value);
    int appended = PyList_Append(headers, field);
    Py_DECREF(field);
    return appended;
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
    while (at < last) {
        line_t line;
        if (scan_line(data, at, &line) < 0) {
            goto give_up;
        }
        canonical &= written_so(data, &line);
        int index;
        PyObject *name = line_name(data, at, &line, &index);
        if (name == NULL) {
            goto fail;
        }
        PyObject *value = PyBytes_FromStringAndSize((const char *)data + line.first,
                                                    line.stop - line.first);
        if (value == NULL) {
            Py_DECREF(name);
            goto fail;
        }
        if (append_field(headers, name, value) < 0) {
            goto fail;
        }
        at = line.end + 2;
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

/* Whether ``name`` (``size`` bytes, lower case) is in OTHER_CHANGED. */
static int
other_changed(const unsigned char *name, Py_ssize_t size)
{
    for (size_t i = 0; i < OTHER_CHANGED_COUNT; i++) {
        if (strlen(OTHER_CHANGED[i]) == (size_t)size
            && memcmp(OTHER_CHANGED[i], name, (size_t)size) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The field pairs of the last head response_head read, by their place in the
 * head (its first PAIRS_KEPT field lines; NULL: none kept there), with their
 * name's index in KNOWN and whether it is one of OTHER_CHANGED. An upstream
 * answers alike: a head that repeats a line at the same place (its Server, its
 * Content-Type, the Date of this second) is given that pair object again,
 * rather than a new name, value and tuple freed with each response (~270
 * instructions a field). A pair is immutable: shared between responses, no
 * reader can tell (FieldBlock.holds compares pairs by identity, and the same
 * object is the same name and value). A line whose name has an upper-case
 * letter is neither kept nor looked up (its name is made in lower case).
 * Holds one head's fields at most (within the caller's limit). */
#define PAIRS_KEPT 16
static PyObject *kept_pairs[PAIRS_KEPT];
static signed char kept_index[PAIRS_KEPT];
static char kept_changed[PAIRS_KEPT];

PyDoc_STRVAR(response_head_doc,
"response_head(raw, limit, /)\n--\n\n"
"The usual upstream response head at the start of raw, read whole in one pass\n"
"(wire._parse_head's answers for it, see there): (end, status, reason, bare,\n"
"length, length_index, length_at, size, flags, lines): bare, the fields without\n"
"Content-Length (whose field was at length_index, -1: none); flags: 1\n"
"canonical, 2 date, 4 server, 8 plain; lines, the head without its Content-Length\n"
"line and blank line where canonical and plain (what wire._Parsed.block cuts),\n"
"else None. None for any\n"
"other: not whole yet, longer than limit, not HTTP/1.1, a 1xx, a Connection or\n"
"Transfer-Encoding field, several Content-Length fields or one that is no 1 to\n"
"18 digits, anything invalid; the caller's Python parse then answers it.");

static PyObject *
response_head(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "response_head() takes bytes and an integer");
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[1]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *raw = args[0];
    Py_ssize_t length = PyBytes_GET_SIZE(raw);
    /* Every scan below stops at a CR, LF or NUL at the latest: at the NUL every
     * bytes object has after its last byte (data[length]), which no check takes
     * for a CR or LF; so no index goes past data[length]. */
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(raw);
    /* The status line: "HTTP/1.1 " three digits (no 1xx), then SP and a reason,
     * or its end. */
    if (length < 14 || memcmp(data, "HTTP/1.1 ", 9) != 0) {
        Py_RETURN_NONE;
    }
    int hundreds = data[9] - '0', tens = data[10] - '0', units = data[11] - '0';
    if (hundreds < 2 || hundreds > 9 || tens < 0 || tens > 9 || units < 0 || units > 9) {
        Py_RETURN_NONE;
    }
    Py_ssize_t eol = 12;
    if (data[12] == ' ') {
        eol = 13;
        while (!STOP[data[eol]]) {
            eol++;
        }
    }
    if (data[eol] != '\r' || data[eol + 1] != '\n') {
        Py_RETURN_NONE;
    }
    Py_ssize_t reason_at = eol > 12 ? 13 : 12;
    PyObject *headers = PyList_New(0);
    if (headers == NULL) {
        return NULL;
    }
    PyObject *length_value = NULL; /* the Content-Length value (a reference) */
    Py_ssize_t length_index = -1, length_at = -1, pos = eol + 2;
    long long size = -1;
    int canonical = 1, date = 0, server = 0, plain = 1;
    Py_ssize_t at = eol + 2;
    Py_ssize_t field_no = 0; /* the field line's place in the head */
    while (data[at] != '\r') {
        if (at - 2 > limit) {
            goto decline; /* longer than limit (the Python parse says so) */
        }
        line_t line;
        if (scan_line(data, at, &line) < 0) {
            goto decline;
        }
        canonical &= written_so(data, &line);
        int index;
        Py_ssize_t name_size = line.colon - at;
        Py_ssize_t value_size = line.stop - line.first;
        const unsigned char *value_bytes = data + line.first;
        /* The pair kept from the last head at this place, where this line
         * repeats it (see kept_pairs): no name, value nor tuple made. */
        PyObject *kept = NULL;
        int changed_other = 0;
        if (field_no < PAIRS_KEPT && !line.upper && kept_pairs[field_no] != NULL) {
            PyObject *pair = kept_pairs[field_no];
            PyObject *kept_name = PyTuple_GET_ITEM(pair, 0);
            PyObject *kept_value = PyTuple_GET_ITEM(pair, 1);
            if (PyBytes_GET_SIZE(kept_name) == name_size
                && PyBytes_GET_SIZE(kept_value) == value_size
                && memcmp(PyBytes_AS_STRING(kept_name), data + at, (size_t)name_size) == 0
                && memcmp(PyBytes_AS_STRING(kept_value), value_bytes, (size_t)value_size)
                       == 0) {
                kept = pair;
                index = kept_index[field_no];
                changed_other = kept_changed[field_no];
            }
        }
        PyObject *name = NULL;
        if (kept == NULL) {
            name = line_name(data, at, &line, &index);
            if (name == NULL) {
                goto fail;
            }
            changed_other =
                index < 0
                && other_changed((const unsigned char *)PyBytes_AS_STRING(name), name_size);
        }
        if (index == K_CONTENT_LENGTH) {
            /* (Never a kept pair: its field is not in the list, nor kept.) */
            if (length_index >= 0 || value_size < 1 || value_size > 18) {
                Py_XDECREF(name);
                goto decline;
            }
            size = 0;
            for (Py_ssize_t i = 0; i < value_size; i++) {
                int digit = value_bytes[i] - '0';
                if (digit < 0 || digit > 9) {
                    Py_XDECREF(name);
                    goto decline;
                }
                size = size * 10 + digit;
            }
            length_index = PyList_GET_SIZE(headers);
            length_at = pos;
        }
        else if (index == K_DATE) {
            date = 1;
        }
        else if (index == K_SERVER) {
            server = 1;
        }
        else if (index == K_CONNECTION || index == K_TRANSFER_ENCODING) {
            Py_XDECREF(name);
            goto decline; /* the framing or the connection's reuse: Python's */
        }
        else if (index == K_KEEP_ALIVE || index == K_LOCATION || index == K_SET_COOKIE
                 || changed_other) {
            plain = 0;
        }
        if (kept != NULL) {
            if (PyList_Append(headers, kept) < 0) {
                goto fail;
            }
        }
        else {
            PyObject *value = PyBytes_FromStringAndSize((const char *)value_bytes, value_size);
            if (value == NULL) {
                Py_DECREF(name);
                goto fail;
            }
            if (index == K_CONTENT_LENGTH) {
                /* Kept apart: the list is the fields without it (see bare). */
                length_value = value;
                Py_DECREF(name);
            }
            else {
                PyObject *field = PyTuple_New(2);
                if (field == NULL) {
                    Py_DECREF(name);
                    Py_DECREF(value);
                    goto fail;
                }
                PyTuple_SET_ITEM(field, 0, name);
                PyTuple_SET_ITEM(field, 1, value);
                if (PyList_Append(headers, field) < 0) {
                    Py_DECREF(field);
                    goto fail;
                }
                if (field_no < PAIRS_KEPT && !line.upper) {
                    /* Kept for the next head (this reference moves there). */
                    Py_XSETREF(kept_pairs[field_no], field);
                    kept_index[field_no] = (signed char)index;
                    kept_changed[field_no] = (char)changed_other;
                }
                else {
                    Py_DECREF(field);
                }
            }
        }
        field_no++;
        pos += name_size + value_size + 4;
        at = line.end + 2;
    }
    if (data[at + 1] != '\n' || at - 2 > limit) {
        goto decline;
    }
    /* The head's lines without Content-Length's and the blank line, where they
     * may be written as they came (canonical and plain): one allocation. */
    int canonical_head = canonical && eol > 13;
    PyObject *lines = Py_None;
    Py_INCREF(lines);
    if (canonical_head && plain) {
        Py_ssize_t cut = at; /* where the blank line begins */
        Py_ssize_t skip_from = cut, skip_to = cut;
        if (length_index >= 0) {
            skip_from = length_at;
            skip_to = length_at + 18 + PyBytes_GET_SIZE(length_value);
        }
        Py_DECREF(lines);
        lines = PyBytes_FromStringAndSize(NULL, cut - (skip_to - skip_from));
        if (lines == NULL) {
            goto fail;
        }
        char *out = PyBytes_AS_STRING(lines);
        memcpy(out, data, (size_t)skip_from);
        memcpy(out + skip_from, data + skip_to, (size_t)(cut - skip_to));
    }
    /* (Built item by item: Py_BuildValue's reading of its format costs more than
     * the rest of this function.) */
    PyObject *reason = PyBytes_FromStringAndSize((const char *)data + reason_at, eol - reason_at);
    PyObject *result = PyTuple_New(10);
    PyObject *numbers[6] = {
        PyLong_FromSsize_t(at + 2),
        PyLong_FromLong(hundreds * 100 + tens * 10 + units),
        PyLong_FromSsize_t(length_at),
        PyLong_FromLongLong(size),
        PyLong_FromLong(canonical_head | date << 1 | server << 2 | plain << 3),
        PyLong_FromSsize_t(length_index),
    };
    if (reason == NULL || result == NULL || numbers[0] == NULL || numbers[1] == NULL
        || numbers[2] == NULL || numbers[3] == NULL || numbers[4] == NULL
        || numbers[5] == NULL) {
        Py_XDECREF(reason);
        Py_XDECREF(result);
        for (int i = 0; i < 6; i++) {
            Py_XDECREF(numbers[i]);
        }
        Py_DECREF(lines);
        goto fail;
    }
    PyObject *length_object = length_value != NULL ? length_value : Py_None;
    Py_INCREF(length_object);
    PyTuple_SET_ITEM(result, 0, numbers[0]);
    PyTuple_SET_ITEM(result, 1, numbers[1]);
    PyTuple_SET_ITEM(result, 2, reason);
    PyTuple_SET_ITEM(result, 3, headers);
    PyTuple_SET_ITEM(result, 4, length_object);
    PyTuple_SET_ITEM(result, 5, numbers[5]);
    PyTuple_SET_ITEM(result, 6, numbers[2]);
    PyTuple_SET_ITEM(result, 7, numbers[3]);
    PyTuple_SET_ITEM(result, 8, numbers[4]);
    PyTuple_SET_ITEM(result, 9, lines);
    Py_XDECREF(length_value); /* (the tuple holds its own reference) */
    return result;

decline:
    Py_XDECREF(length_value);
    Py_DECREF(headers);
    Py_RETURN_NONE;

fail:
    Py_XDECREF(length_value);
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

PyDoc_STRVAR(request_head_doc,
"request_head(kinds, method, target, host, headers, tail, /)\n--\n\n"
"The head of a request without a body as the upstream gets it, in one piece:\n"
"the request line, 'host: ' host, the fields of headers that pass on as they\n"
"came, in order, the cookie fields joined in one, then tail (the forwarding\n"
"fields and the blank line); forward._plain_head_py's answer. kinds: the kind\n"
"of each name that does not pass on as it came (0 dropped, 1 a cookie, 2\n"
"Connection, dropped when it says only keep-alive, 3 any other: None). None\n"
"where a field asks for forward.outgoing's full work.");

/* A Connection value that says only "keep-alive" (any case, SP and HTAB around):
 * it names no field but one dropped anyway. */
static int
keep_alive_only(PyObject *value)
{
    const unsigned char *v = (const unsigned char *)PyBytes_AS_STRING(value);
    Py_ssize_t first = 0, stop = PyBytes_GET_SIZE(value);
    while (first < stop && (v[first] == ' ' || v[first] == '\t')) {
        first++;
    }
    while (stop > first && (v[stop - 1] == ' ' || v[stop - 1] == '\t')) {
        stop--;
    }
    if (stop - first != 10) {
        return 0;
    }
    static const char want[] = "keep-alive";
    for (Py_ssize_t i = 0; i < 10; i++) {
        unsigned char c = v[first + i];
        if (c >= 'A' && c <= 'Z') {
            c += 32;
        }
        if (c != (unsigned char)want[i]) {
            return 0;
        }
    }
    return 1;
}

/* ``kinds`` read into a table (the dict's names and kinds, copied; the dict
 * compared by identity, and read again when another is given), so that a name is
 * looked up by its size and bytes: a dict look-up would hash each client's name
 * object anew and compare it with the key by a rich compare (~270 instructions a
 * field). The caller's dict is the one list of the names. */
#define PLAIN_MAX 32
#define PLAIN_NAME_MAX 32
static PyObject *plain_source; /* the dict read (a reference), or NULL */
static int plain_count;
static Py_ssize_t plain_sizes[PLAIN_MAX];
static char plain_names[PLAIN_MAX][PLAIN_NAME_MAX];
static long plain_kinds[PLAIN_MAX];

static int
read_plain_kinds(PyObject *kinds)
{
    if (kinds == plain_source) {
        return 0;
    }
    if (PyDict_GET_SIZE(kinds) > PLAIN_MAX) {
        PyErr_SetString(PyExc_ValueError, "request_head(): too many kinds");
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *name, *kind;
    int count = 0;
    while (PyDict_Next(kinds, &pos, &name, &kind)) {
        long k = PyLong_AsLong(kind);
        if (!PyBytes_CheckExact(name) || PyBytes_GET_SIZE(name) > PLAIN_NAME_MAX
            || (k == -1 && PyErr_Occurred())) {
            plain_count = 0;
            Py_CLEAR(plain_source);
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "request_head(): a kind is no short name");
            }
            return -1;
        }
        plain_sizes[count] = PyBytes_GET_SIZE(name);
        memcpy(plain_names[count], PyBytes_AS_STRING(name), (size_t)plain_sizes[count]);
        plain_kinds[count] = k;
        count++;
    }
    plain_count = count;
    Py_INCREF(kinds);
    Py_XSETREF(plain_source, kinds);
    return 0;
}

/* The kind of ``name`` (-1: none, it passes on as it came). */
static long
plain_kind(PyObject *name)
{
    Py_ssize_t size = PyBytes_GET_SIZE(name);
    const char *bytes = PyBytes_AS_STRING(name);
    for (int i = 0; i < plain_count; i++) {
        if (plain_sizes[i] == size && memcmp(plain_names[i], bytes, (size_t)size) == 0) {
            return plain_kinds[i];
        }
    }
    return -1;
}

static PyObject *
request_head(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyDict_CheckExact(args[0]) || !PyBytes_CheckExact(args[1])
        || !PyBytes_CheckExact(args[2]) || !PyBytes_CheckExact(args[3])
        || !PyList_CheckExact(args[4]) || !PyBytes_CheckExact(args[5])) {
        PyErr_SetString(PyExc_TypeError,
                        "request_head() takes a dict, three bytes, a list and bytes");
        return NULL;
    }
    PyObject *method = args[1], *target = args[2], *host = args[3];
    PyObject *headers = args[4], *tail = args[5];
    if (read_plain_kinds(args[0]) < 0) {
        return NULL;
    }
    /* The first pass sizes the head and decides; no Python code runs in either
     * pass (exact bytes and tuples, read in C), so the list stays as it is. */
    Py_ssize_t count = PyList_GET_SIZE(headers);
    Py_ssize_t total = PyBytes_GET_SIZE(method) + 1 + PyBytes_GET_SIZE(target) + 17
                       + PyBytes_GET_SIZE(host) + 2 + PyBytes_GET_SIZE(tail);
    Py_ssize_t cookies = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *field = PyList_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(field) || PyTuple_GET_SIZE(field) != 2
            || !PyBytes_CheckExact(PyTuple_GET_ITEM(field, 0))
            || !PyBytes_CheckExact(PyTuple_GET_ITEM(field, 1))) {
            Py_RETURN_NONE;
        }
        PyObject *name = PyTuple_GET_ITEM(field, 0);
        PyObject *value = PyTuple_GET_ITEM(field, 1);
        long k = plain_kind(name);
        if (k < 0) {
            total += PyBytes_GET_SIZE(name) + 4 + PyBytes_GET_SIZE(value);
            continue;
        }
        if (k == 0) {
            continue;
        }
        if (k == 1) {
            total += (cookies ? 2 : 10) + PyBytes_GET_SIZE(value);
            cookies++;
            continue;
        }
        if (k == 2 && keep_alive_only(value)) {
            continue;
        }
        Py_RETURN_NONE;
    }
    PyObject *head = PyBytes_FromStringAndSize(NULL, total);
    if (head == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(head);
#define PUT(p, n) (memcpy(out, (p), (size_t)(n)), out += (n))
#define PUT_BYTES(b) PUT(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
    PUT_BYTES(method);
    *out++ = ' ';
    PUT_BYTES(target);
    PUT(" HTTP/1.1\r\nhost: ", 17);
    PUT_BYTES(host);
    PUT("\r\n", 2);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *field = PyList_GET_ITEM(headers, i);
        PyObject *name = PyTuple_GET_ITEM(field, 0);
        /* (Known from the first pass: only names without a kind pass on here.) */
        if (plain_kind(name) >= 0) {
            continue;
        }
        PUT_BYTES(name);
        PUT(": ", 2);
        PUT_BYTES(PyTuple_GET_ITEM(field, 1));
        PUT("\r\n", 2);
    }
    if (cookies) {
        Py_ssize_t seen = 0;
        PUT("cookie: ", 8);
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *field = PyList_GET_ITEM(headers, i);
            if (plain_kind(PyTuple_GET_ITEM(field, 0)) == 1) {
                if (seen++) {
                    PUT("; ", 2);
                }
                PUT_BYTES(PyTuple_GET_ITEM(field, 1));
            }
        }
        PUT("\r\n", 2);
    }
    PUT_BYTES(tail);
#undef PUT_BYTES
#undef PUT
    assert(out == PyBytes_AS_STRING(head) + total);
    return head;
}

PyDoc_STRVAR(take_doc,
"take(buffer, size, /)\n--\n\n"
"bytes(buffer[:size]) for a bytearray (an upstream connection's read, copied\n"
"out of its pool's read buffer): one allocation and a copy.");

static PyObject *
take(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyByteArray_CheckExact(args[0]) || !PyLong_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "take() takes a bytearray and an integer");
        return NULL;
    }
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (size < 0 || size > PyByteArray_GET_SIZE(args[0])) {
        PyErr_SetString(PyExc_ValueError, "take(): the size is out of the buffer's range");
        return NULL;
    }
    return PyBytes_FromStringAndSize(PyByteArray_AS_STRING(args[0]), size);
}

static PyMethodDef methods[] = {
    {"header_lines", (PyCFunction)(void (*)(void))header_lines, METH_FASTCALL, header_lines_doc},
    {"response_head", (PyCFunction)(void (*)(void))response_head, METH_FASTCALL,
     response_head_doc},
    {"join", (PyCFunction)join, METH_O, join_doc},
    {"take", (PyCFunction)(void (*)(void))take, METH_FASTCALL, take_doc},
    {"request_head", (PyCFunction)(void (*)(void))request_head, METH_FASTCALL,
     request_head_doc},
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
