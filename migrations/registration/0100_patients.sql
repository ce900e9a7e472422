-- Patients known to the OPD, keyed by their national identification number (the book's `id`).
create table patients (
    id bigint primary key check (id > 0),
    full_name text not null,
    address text,
    sex text check (sex in ('male', 'female', 'other')),
    email text,
    phone bigint check (phone >= 0),
    remarks text,
    registered_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
