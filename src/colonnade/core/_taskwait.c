/* colonnade.core._taskwait: a task's reusable wait in C (core/taskwait.py's
 * TaskWait, and its two kinds: the upstream connection's wait for bytes,
 * handlers/proxy/client.py's PyWait, and the client connection's wait for its
 * next request, transport/connection.py's Waker).
 *
 * Built with the compiled modules (setup.py); the pure-Python build, and any
 * build where this module is absent, uses the Python classes, which behave the
 * same (tests/handlers/proxy/test_client.py and tests/transport/test_waker.py
 * run both).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* ---- Wait: what a connection's task awaits, one object reused for each wait ----
 *
 * core/taskwait.py's TaskWait in C, one per connection, armed again for each
 * wait: asyncio's future protocol as a task uses it. An upstream connection's
 * (client.py's PyWait: ``wake(now)``) and a client connection's between its
 * requests (connection.py's Waker: ``set_result(value)``, the await then gives
 * that value; None until a wait ends so). Why C:
 * asyncio's task calls ``add_done_callback(wakeup, context=...)`` at each wait, a
 * call with a keyword, which a compiled (mypyc) method parses generically, ~700
 * instructions of every proxied request; here the keyword is one pointer compare.
 * The task also reads the wait's attributes by name at each wait (whether it
 * blocks, its loop, its add_done_callback: a bound method made and freed each
 * time): answered here first by a pointer compare (wait_getattro), the two
 * methods bound once (a cycle with the wait, which lives as long as its
 * connection: the collector frees them, as PyWait's). And its ``__await__`` is
 * itself (an iterator that gives the wait once while it is pending): no
 * iterator made per wait.
 *
 * What it does is PyWait's, exactly: arm() begins a wait; wake(now) ends it, and
 * with ``now`` (the caller is a loop callback: the protocol's read) runs the
 * task's wake-up before it returns, unless a task is running (then at the loop's
 * next turn, as without ``now``); a wake-up of a wait that ended well is handed
 * ``finished`` (a finished future: the task reads its result in C), a cancelled
 * wait's is handed the wait (whose result() raises CancelledError). One task
 * waits at a time: a second raises RuntimeError. */

enum { W_PENDING = 0, W_DONE = 1, W_CANCELLED = 2 };

typedef struct {
    PyObject_HEAD
    PyObject *loop;          /* read by the task as ``_loop`` */
    PyObject *finished;      /* a finished future, for a wait that ended well */
    PyObject *current_task;  /* loop -> its running task or None */
    PyObject *callback;      /* the waiting task's wake-up (NULL: none) */
    PyObject *context;       /* and its context */
    PyObject *message;       /* a cancellation's */
    PyObject *bound_add;     /* self.add_done_callback and self.get_loop, bound */
    PyObject *bound_loop;    /* once (see wait_getattro) */
    PyObject *value;         /* what the await gives (set_result's; None: none) */
    int state;
    char blocking;           /* ``_asyncio_future_blocking`` */
} WaitObject;

static PyObject *cancelled_error;     /* asyncio.CancelledError */
static PyObject *invalid_state_error; /* asyncio.InvalidStateError */
static PyObject *str_context;         /* "context", interned */
static PyObject *str_msg;             /* "msg", interned */
static PyObject *str_call_soon;       /* "call_soon", interned */
static PyObject *str_blocking;        /* "_asyncio_future_blocking", interned */
static PyObject *str_loop;            /* "_loop", interned */
static PyObject *str_add;             /* "add_done_callback", interned */
static PyObject *str_get_loop;        /* "get_loop", interned */
static PyObject *context_kwnames;     /* ("context",) */

static int
wait_traverse(WaitObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->loop);
    Py_VISIT(self->finished);
    Py_VISIT(self->current_task);
    Py_VISIT(self->callback);
    Py_VISIT(self->context);
    Py_VISIT(self->message);
    Py_VISIT(self->bound_add);
    Py_VISIT(self->bound_loop);
    Py_VISIT(self->value);
    return 0;
}

static int
wait_clear(WaitObject *self)
{
    Py_CLEAR(self->loop);
    Py_CLEAR(self->finished);
    Py_CLEAR(self->current_task);
    Py_CLEAR(self->callback);
    Py_CLEAR(self->context);
    Py_CLEAR(self->message);
    Py_CLEAR(self->bound_add);
    Py_CLEAR(self->bound_loop);
    Py_CLEAR(self->value);
    return 0;
}

static void
wait_dealloc(WaitObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    wait_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyObject *
wait_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *loop, *finished, *current_task;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "Wait() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "Wait", 3, 3, &loop, &finished, &current_task)) {
        return NULL;
    }
    WaitObject *self = (WaitObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->loop = Py_NewRef(loop);
    self->finished = Py_NewRef(finished);
    self->current_task = Py_NewRef(current_task);
    self->value = Py_NewRef(Py_None);
    self->state = W_DONE;
    /* (Before they are set, the look-ups below are the generic ones.) */
    self->bound_add = PyObject_GenericGetAttr((PyObject *)self, str_add);
    self->bound_loop = PyObject_GenericGetAttr((PyObject *)self, str_get_loop);
    if (self->bound_add == NULL || self->bound_loop == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* The attributes asyncio's task reads at each wait, by name (a wait that is not
 * an exact asyncio.Future: its generic path), answered first by a pointer
 * compare with the interned names the task uses: _asyncio_future_blocking,
 * get_loop (bound once: the task calls it for the loop; without it, it would
 * look get_loop up in vain, then read _loop), add_done_callback (bound once:
 * no bound method made and freed per wait). Any other name, or one not
 * interned, the generic way. */
static PyObject *
wait_getattro(WaitObject *self, PyObject *name)
{
    if (name == str_blocking) {
        return Py_NewRef(self->blocking ? Py_True : Py_False);
    }
    if (name == str_add && self->bound_add != NULL) {
        return Py_NewRef(self->bound_add);
    }
    if (name == str_get_loop && self->bound_loop != NULL) {
        return Py_NewRef(self->bound_loop);
    }
    if (name == str_loop) {
        return Py_NewRef(self->loop);
    }
    return PyObject_GenericGetAttr((PyObject *)self, name);
}

static int
wait_setattro(WaitObject *self, PyObject *name, PyObject *value)
{
    if (name == str_blocking && value != NULL && PyBool_Check(value)) {
        self->blocking = value == Py_True;
        return 0;
    }
    return PyObject_GenericSetAttr((PyObject *)self, name, value);
}

static PyObject *
wait_get_loop(WaitObject *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self->loop);
}

/* Schedule the wake-up (if a task waits) for the loop's next turn, handed
 * ``handed``: loop.call_soon(callback, handed, context=context). */
static int
schedule_wake(WaitObject *self, PyObject *handed)
{
    PyObject *callback = self->callback;
    if (callback == NULL) {
        return 0; /* not awaited yet: the await returns at once */
    }
    PyObject *context = self->context;
    self->callback = self->context = NULL;
    PyObject *stack[4] = {self->loop, callback, handed, context != NULL ? context : Py_None};
    PyObject *res = PyObject_VectorcallMethod(
        str_call_soon, stack, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, context_kwnames);
    Py_DECREF(callback);
    Py_XDECREF(context);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

static PyObject *
wait_arm(WaitObject *self, PyObject *Py_UNUSED(ignored))
{
    self->state = W_PENDING;
    Py_CLEAR(self->callback);
    Py_CLEAR(self->context);
    Py_RETURN_NONE;
}

static PyObject *
wait_wake(WaitObject *self, PyObject *now)
{
    if (self->state != W_PENDING) {
        Py_RETURN_NONE;
    }
    self->state = W_DONE;
    int at_once = PyObject_IsTrue(now);
    if (at_once < 0) {
        return NULL;
    }
    if (at_once && self->callback != NULL && self->context != NULL) {
        PyObject *task = PyObject_CallOneArg(self->current_task, self->loop);
        if (task == NULL) {
            return NULL;
        }
        int idle = task == Py_None;
        Py_DECREF(task);
        if (idle) {
            PyObject *callback = self->callback;
            PyObject *context = self->context;
            self->callback = self->context = NULL;
            PyObject *res = NULL;
            if (PyContext_Enter(context) == 0) {
                res = PyObject_CallOneArg(callback, self->finished);
                if (PyContext_Exit(context) < 0) {
                    Py_CLEAR(res);
                }
            }
            Py_DECREF(callback);
            Py_DECREF(context);
            if (res == NULL) {
                return NULL;
            }
            Py_DECREF(res);
            Py_RETURN_NONE;
        }
    }
    if (schedule_wake(self, self->finished) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* set_result(value): end the wait with ``value`` (what the await then gives),
 * the task's wake-up scheduled for the loop's next turn, as a future's; a wait
 * that ended already stays as it is (unlike a future's, which raises). */
static PyObject *
wait_set_result(WaitObject *self, PyObject *value)
{
    if (self->state != W_PENDING) {
        Py_RETURN_NONE;
    }
    self->state = W_DONE;
    Py_SETREF(self->value, Py_NewRef(value));
    if (schedule_wake(self, self->finished) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Let go of the two bound methods, each of which holds the wait: a wait whose
 * owner is done with it (a client connection that closed) is then freed by its
 * reference count, not left as a cycle for the collector's full pass. Called
 * again, or followed by more use, it costs nothing: the look-ups fall back to
 * the generic ones (wait_getattro). */
static PyObject *
wait_release(WaitObject *self, PyObject *Py_UNUSED(ignored))
{
    Py_CLEAR(self->bound_add);
    Py_CLEAR(self->bound_loop);
    Py_RETURN_NONE;
}

static PyObject *
wait_done(WaitObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->state != W_PENDING);
}

static PyObject *
wait_cancelled(WaitObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->state == W_CANCELLED);
}

/* Raise what result() raises: CancelledError for a cancelled wait,
 * InvalidStateError for one that goes on; 0 for one that ended well. */
static int
wait_check(WaitObject *self)
{
    if (self->state == W_CANCELLED) {
        PyObject *message = self->message != NULL ? self->message : Py_None;
        if (message == Py_None) {
            PyErr_SetNone(cancelled_error);
        }
        else {
            PyErr_SetObject(cancelled_error, message);
        }
        return -1;
    }
    if (self->state == W_PENDING) {
        PyErr_SetString(invalid_state_error, "the wait goes on");
        return -1;
    }
    return 0;
}

static PyObject *
wait_result(WaitObject *self, PyObject *Py_UNUSED(ignored))
{
    if (wait_check(self) < 0) {
        return NULL;
    }
    return Py_NewRef(self->value);
}

static PyObject *
wait_exception(WaitObject *self, PyObject *Py_UNUSED(ignored))
{
    if (wait_check(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* add_done_callback(fn, *, context=None): only its task waits. */
static PyObject *
wait_add_done_callback(WaitObject *self, PyObject *const *args, Py_ssize_t nargsf,
                       PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *context = Py_None;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, 0);
        if (PyTuple_GET_SIZE(kwnames) != 1 ||
            (name != str_context && !(PyUnicode_Check(name) &&
                                      PyUnicode_Compare(name, str_context) == 0))) {
            PyErr_SetString(PyExc_TypeError,
                            "add_done_callback() takes one keyword argument: context");
            return NULL;
        }
        context = args[nargs];
    }
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "add_done_callback() takes one positional argument");
        return NULL;
    }
    PyObject *fn = args[0];
    if (self->state != W_PENDING) {
        /* Ended: soon (as a future's callbacks). */
        PyObject *stack[4] = {self->loop, fn, (PyObject *)self, context};
        PyObject *res = PyObject_VectorcallMethod(
            str_call_soon, stack, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, context_kwnames);
        if (res == NULL) {
            return NULL;
        }
        Py_DECREF(res);
        Py_RETURN_NONE;
    }
    if (self->callback != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a reusable wait has one waiter: its task");
        return NULL;
    }
    self->callback = Py_NewRef(fn);
    Py_XSETREF(self->context, context == Py_None ? NULL : Py_NewRef(context));
    Py_RETURN_NONE;
}

static PyObject *
wait_remove_done_callback(WaitObject *self, PyObject *fn)
{
    if (self->callback != NULL) {
        int equal = PyObject_RichCompareBool(self->callback, fn, Py_EQ);
        if (equal < 0) {
            return NULL;
        }
        if (equal) {
            Py_CLEAR(self->callback);
            Py_CLEAR(self->context);
            return PyLong_FromLong(1);
        }
    }
    return PyLong_FromLong(0);
}

/* cancel(msg=None): the task's cancel() (positional from the C task, by keyword
 * from the Python one). */
static PyObject *
wait_cancel(WaitObject *self, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *msg = Py_None;
    if (nargs + nkw > 1) {
        PyErr_SetString(PyExc_TypeError, "cancel() takes at most one argument");
        return NULL;
    }
    if (nargs == 1) {
        msg = args[0];
    }
    else if (nkw == 1) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, 0);
        if (name != str_msg &&
            !(PyUnicode_Check(name) && PyUnicode_Compare(name, str_msg) == 0)) {
            PyErr_SetString(PyExc_TypeError, "cancel() takes one keyword argument: msg");
            return NULL;
        }
        msg = args[0];
    }
    if (self->state != W_PENDING) {
        Py_RETURN_FALSE;
    }
    self->state = W_CANCELLED;
    Py_XSETREF(self->message, Py_NewRef(msg));
    if (schedule_wake(self, (PyObject *)self) < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

/* The await: the wait itself, an iterator that gives the wait while it is pending
 * (the task then adds its wake-up) and ends once it ended: the await gives its
 * value (None unless set_result gave one: the StopIteration carries it), or
 * raises CancelledError for a wait cancelled before it was awaited. (Woken
 * cancelled, the task's wake-up raises it from result() into the awaiting
 * coroutine: there is no throw() here to catch it.) */
static PyObject *
wait_await(WaitObject *self)
{
    return Py_NewRef(self);
}

static PyObject *
wait_next(WaitObject *self)
{
    if (self->state == W_PENDING) {
        self->blocking = 1;
        return Py_NewRef(self);
    }
    if (self->state == W_CANCELLED) {
        wait_check(self);
        return NULL;
    }
    if (self->value != Py_None) {
        /* (A bool or another plain value: no tuple, no exception, which
         * StopIteration's argument would unpack or raise.) */
        PyErr_SetObject(PyExc_StopIteration, self->value);
    }
    return NULL;
}

static PyMethodDef wait_methods[] = {
    {"arm", (PyCFunction)wait_arm, METH_NOARGS, "Begin a wait (the last one ended)."},
    {"get_loop", (PyCFunction)wait_get_loop, METH_NOARGS, "The loop the wait belongs to."},
    {"wake", (PyCFunction)wait_wake, METH_O,
     "wake(now, /)\n--\n\nEnd the wait (see client.PyWait.wake)."},
    {"set_result", (PyCFunction)wait_set_result, METH_O,
     "set_result(value, /)\n--\n\nEnd the wait with value, its wake-up at the loop's next turn."},
    {"release", (PyCFunction)wait_release, METH_NOARGS,
     "Let go of what makes the wait a cycle (its owner is done with it)."},
    {"done", (PyCFunction)wait_done, METH_NOARGS, "The wait ended."},
    {"cancelled", (PyCFunction)wait_cancelled, METH_NOARGS, "The wait was cancelled."},
    {"result", (PyCFunction)wait_result, METH_NOARGS,
     "The wait's value (None unless set_result gave one); raises CancelledError where "
     "the wait was cancelled."},
    {"exception", (PyCFunction)wait_exception, METH_NOARGS,
     "None: a wait never ends with an exception (but a cancellation's)."},
    {"add_done_callback", (PyCFunction)(void (*)(void))wait_add_done_callback,
     METH_FASTCALL | METH_KEYWORDS, "Call fn(self) when the wait ends: only its task waits."},
    {"remove_done_callback", (PyCFunction)wait_remove_done_callback, METH_O,
     "Forget fn; the number of callbacks removed."},
    {"cancel", (PyCFunction)(void (*)(void))wait_cancel, METH_FASTCALL | METH_KEYWORDS,
     "Cancel the wait (the task's cancel())."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef wait_members[] = {
    {"_asyncio_future_blocking", T_BOOL, offsetof(WaitObject, blocking), 0, NULL},
    {"_loop", T_OBJECT, offsetof(WaitObject, loop), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot wait_slots[] = {
    {Py_tp_doc, (void *)"Wait(loop, finished, current_task): a connection's reusable wait "
                "(see core/_taskwait.c)."},
    {Py_tp_new, wait_new},
    {Py_tp_dealloc, wait_dealloc},
    {Py_tp_traverse, wait_traverse},
    {Py_tp_clear, wait_clear},
    {Py_tp_methods, wait_methods},
    {Py_tp_members, wait_members},
    {Py_tp_getattro, wait_getattro},
    {Py_tp_setattro, wait_setattro},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, wait_next},
    {Py_am_await, wait_await},
    {0, NULL},
};

static PyType_Spec wait_spec = {
    .name = "colonnade.core._taskwait.Wait",
    .basicsize = sizeof(WaitObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = wait_slots,
};

static int
exec_module(PyObject *module)
{
    if (cancelled_error == NULL) {
        PyObject *exceptions = PyImport_ImportModule("asyncio.exceptions");
        if (exceptions == NULL) {
            return -1;
        }
        cancelled_error = PyObject_GetAttrString(exceptions, "CancelledError");
        invalid_state_error = PyObject_GetAttrString(exceptions, "InvalidStateError");
        Py_DECREF(exceptions);
        str_context = PyUnicode_InternFromString("context");
        str_msg = PyUnicode_InternFromString("msg");
        str_call_soon = PyUnicode_InternFromString("call_soon");
        str_blocking = PyUnicode_InternFromString("_asyncio_future_blocking");
        str_loop = PyUnicode_InternFromString("_loop");
        str_add = PyUnicode_InternFromString("add_done_callback");
        str_get_loop = PyUnicode_InternFromString("get_loop");
        if (cancelled_error == NULL || invalid_state_error == NULL || str_context == NULL ||
            str_msg == NULL || str_call_soon == NULL || str_blocking == NULL ||
            str_loop == NULL || str_add == NULL || str_get_loop == NULL) {
            return -1;
        }
        context_kwnames = PyTuple_Pack(1, str_context);
        if (context_kwnames == NULL) {
            return -1;
        }
    }
    PyObject *type = PyType_FromModuleAndSpec(module, &wait_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "Wait", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

static struct PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "colonnade.core._taskwait",
    .m_doc = "A connection's task's reusable wait, in C (see core/taskwait.py).",
    .m_size = 0,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__taskwait(void)
{
    return PyModuleDef_Init(&module);
}
