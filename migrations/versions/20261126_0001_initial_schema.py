"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('pbxes',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('max_extensions', sa.Integer(), nullable=False),
    sa.Column('max_extension_groups', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pbxes')),
    sa.UniqueConstraint('name', name=op.f('uq_pbxes_name'))
    )
    op.create_table('api_keys',
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=12), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_api_keys_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_pbx_id'), ['pbx_id'], unique=False)

    op.create_table('delta_links',
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('resource', sa.String(length=64), nullable=False),
    sa.Column('link', sa.Text(), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_delta_links_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pbx_id', 'resource', name=op.f('pk_delta_links'))
    )
    op.create_table('extension_groups',
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('managed_by', sa.String(length=16), nullable=False),
    sa.Column('entra_id', sa.String(length=64), nullable=True),
    sa.Column('former_entra_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_extension_groups_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_extension_groups')),
    sa.UniqueConstraint('pbx_id', 'entra_id', name=op.f('uq_extension_groups_pbx_id_entra_id')),
    sa.UniqueConstraint('pbx_id', 'name', name=op.f('uq_extension_groups_pbx_id_name'))
    )
    with op.batch_alter_table('extension_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_extension_groups_managed_by'), ['managed_by'], unique=False)
        batch_op.create_index(batch_op.f('ix_extension_groups_pbx_id'), ['pbx_id'], unique=False)

    op.create_table('extensions',
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('number', sa.String(length=16), nullable=False),
    sa.Column('first_name', sa.String(length=200), nullable=True),
    sa.Column('last_name', sa.String(length=200), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('email_key', sa.String(length=320), nullable=True),
    sa.Column('mobile', sa.String(length=64), nullable=True),
    sa.Column('job_title', sa.String(length=200), nullable=True),
    sa.Column('welcome_email_status', sa.String(length=16), nullable=True),
    sa.Column('welcome_email_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('managed_by', sa.String(length=16), nullable=False),
    sa.Column('entra_id', sa.String(length=64), nullable=True),
    sa.Column('former_entra_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_extensions_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_extensions')),
    sa.UniqueConstraint('pbx_id', 'email_key', name=op.f('uq_extensions_pbx_id_email_key')),
    sa.UniqueConstraint('pbx_id', 'entra_id', name=op.f('uq_extensions_pbx_id_entra_id')),
    sa.UniqueConstraint('pbx_id', 'number', name=op.f('uq_extensions_pbx_id_number'))
    )
    with op.batch_alter_table('extensions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_extensions_managed_by'), ['managed_by'], unique=False)
        batch_op.create_index('ix_extensions_pbx_former_entra_id', ['pbx_id', 'former_entra_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_extensions_pbx_id'), ['pbx_id'], unique=False)

    op.create_table('graph_subscriptions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('resource', sa.Text(), nullable=False),
    sa.Column('change_type', sa.String(length=64), nullable=False),
    sa.Column('client_state_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('renewed_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_graph_subscriptions_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_graph_subscriptions'))
    )
    with op.batch_alter_table('graph_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_graph_subscriptions_pbx_id'), ['pbx_id'], unique=False)

    op.create_table('integrations',
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('client_id', sa.String(length=36), nullable=True),
    sa.Column('tenant_id', sa.String(length=36), nullable=True),
    sa.Column('client_secret_enc', sa.Text(), nullable=True),
    sa.Column('client_secret_hint', sa.String(length=16), nullable=True),
    sa.Column('client_secret_expires_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('return_url', sa.Text(), nullable=True),
    sa.Column('authorized_account', sa.String(length=320), nullable=True),
    sa.Column('authorized_account_oid', sa.String(length=64), nullable=True),
    sa.Column('home_account_id', sa.String(length=200), nullable=True),
    sa.Column('connected_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True),
    sa.Column('directory_summary', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True),
    sa.Column('warnings', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('schedule_frequency', sa.String(length=8), nullable=False),
    sa.Column('schedule_days', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('schedule_time', sa.String(length=5), nullable=False),
    sa.Column('schedule_version', sa.Integer(), nullable=False),
    sa.Column('held_run_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_integrations_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pbx_id', name=op.f('pk_integrations'))
    )
    op.create_table('notification_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('subscription_id', sa.String(length=64), nullable=False),
    sa.Column('change_type', sa.String(length=32), nullable=False),
    sa.Column('resource', sa.Text(), nullable=False),
    sa.Column('lifecycle_event', sa.String(length=48), nullable=True),
    sa.Column('received_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('processed_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_notification_events_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_events'))
    )
    with op.batch_alter_table('notification_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_events_pbx_id'), ['pbx_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_notification_events_processed_at'), ['processed_at'], unique=False)

    op.create_table('oauth_states',
    sa.Column('state_hash', sa.String(length=64), nullable=False),
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('flow_enc', sa.Text(), nullable=False),
    sa.Column('return_url', sa.Text(), nullable=True),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_oauth_states_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('state_hash', name=op.f('pk_oauth_states'))
    )
    with op.batch_alter_table('oauth_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_states_pbx_id'), ['pbx_id'], unique=False)

    op.create_table('pending_changes',
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('first_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_pending_changes_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pbx_id', name=op.f('pk_pending_changes'))
    )
    op.create_table('phonebooks',
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('visible_to_all', sa.Boolean(), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('managed_by', sa.String(length=16), nullable=False),
    sa.Column('entra_id', sa.String(length=64), nullable=True),
    sa.Column('former_entra_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_phonebooks_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_phonebooks')),
    sa.UniqueConstraint('pbx_id', 'entra_id', name=op.f('uq_phonebooks_pbx_id_entra_id')),
    sa.UniqueConstraint('pbx_id', 'name', name=op.f('uq_phonebooks_pbx_id_name'))
    )
    with op.batch_alter_table('phonebooks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_phonebooks_managed_by'), ['managed_by'], unique=False)
        batch_op.create_index(batch_op.f('ix_phonebooks_pbx_id'), ['pbx_id'], unique=False)

    op.create_table('schedule_fires',
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('fire_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_schedule_fires_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pbx_id', 'fire_at', name=op.f('pk_schedule_fires'))
    )
    op.create_table('sync_failures',
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('entra_id', sa.String(length=64), nullable=False),
    sa.Column('code', sa.String(length=48), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('conflict', sa.String(length=320), nullable=True),
    sa.Column('run_id', sa.String(length=36), nullable=True),
    sa.Column('failed_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_sync_failures_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pbx_id', 'scope', 'entra_id', name=op.f('pk_sync_failures'))
    )
    op.create_table('sync_rules',
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('section', sa.String(length=20), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('config', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('needs_full_sync', sa.Boolean(), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_sync_rules_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pbx_id', 'section', name=op.f('pk_sync_rules'))
    )
    op.create_table('sync_runs',
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('retry_of', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('scopes', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('idempotency_key', sa.String(length=120), nullable=True),
    sa.Column('progress', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('counts', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('failures', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('warnings', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('held', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True),
    sa.Column('plan', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True),
    sa.Column('error', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True),
    sa.Column('graph_requests', sa.Integer(), nullable=False),
    sa.Column('queued_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('locked_by', sa.String(length=100), nullable=True),
    sa.Column('locked_until', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_sync_runs_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_runs')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_sync_runs_idempotency_key'))
    )
    with op.batch_alter_table('sync_runs', schema=None) as batch_op:
        batch_op.create_index('ix_sync_runs_pbx_queued_at', ['pbx_id', 'queued_at'], unique=False)
        batch_op.create_index('ix_sync_runs_status', ['status'], unique=False)
        batch_op.create_index('uq_sync_runs_one_queued', ['pbx_id'], unique=True, postgresql_where=sa.text("status = 'queued' AND dry_run = false AND trigger <> 'cleanup'"), sqlite_where=sa.text("status = 'queued' AND dry_run = 0 AND trigger <> 'cleanup'"))
        batch_op.create_index('uq_sync_runs_one_running', ['pbx_id'], unique=True, postgresql_where=sa.text("status = 'running'"), sqlite_where=sa.text("status = 'running'"))

    op.create_table('token_caches',
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('cache_enc', sa.Text(), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_token_caches_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pbx_id', name=op.f('pk_token_caches'))
    )
    op.create_table('contacts',
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('phonebook_id', sa.String(length=36), nullable=True),
    sa.Column('extension_id', sa.String(length=36), nullable=True),
    sa.Column('first_name', sa.String(length=200), nullable=True),
    sa.Column('last_name', sa.String(length=200), nullable=True),
    sa.Column('company', sa.String(length=200), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('mobile_phone', sa.String(length=64), nullable=True),
    sa.Column('home_phone', sa.String(length=64), nullable=True),
    sa.Column('business_phone', sa.String(length=64), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('managed_by', sa.String(length=16), nullable=False),
    sa.Column('entra_id', sa.String(length=64), nullable=True),
    sa.Column('former_entra_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['extension_id'], ['extensions.id'], name=op.f('fk_contacts_extension_id_extensions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_contacts_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['phonebook_id'], ['phonebooks.id'], name=op.f('fk_contacts_phonebook_id_phonebooks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contacts')),
    sa.UniqueConstraint('extension_id', 'entra_id', name=op.f('uq_contacts_extension_id_entra_id')),
    sa.UniqueConstraint('phonebook_id', 'entra_id', name=op.f('uq_contacts_phonebook_id_entra_id'))
    )
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contacts_extension_id'), ['extension_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_contacts_managed_by'), ['managed_by'], unique=False)
        batch_op.create_index(batch_op.f('ix_contacts_pbx_id'), ['pbx_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_contacts_phonebook_id'), ['phonebook_id'], unique=False)

    op.create_table('extension_group_members',
    sa.Column('group_id', sa.String(length=36), nullable=False),
    sa.Column('extension_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['extension_id'], ['extensions.id'], name=op.f('fk_extension_group_members_extension_id_extensions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['group_id'], ['extension_groups.id'], name=op.f('fk_extension_group_members_group_id_extension_groups'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('group_id', 'extension_id', name=op.f('pk_extension_group_members'))
    )
    with op.batch_alter_table('extension_group_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_extension_group_members_extension_id'), ['extension_id'], unique=False)

    op.create_table('extension_presence',
    sa.Column('extension_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('teams_availability', sa.String(length=32), nullable=True),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['extension_id'], ['extensions.id'], name=op.f('fk_extension_presence_extension_id_extensions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('extension_id', name=op.f('pk_extension_presence'))
    )
    op.create_table('outbox',
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('extension_id', sa.String(length=36), nullable=True),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['extension_id'], ['extensions.id'], name=op.f('fk_outbox_extension_id_extensions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_outbox_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_extension_id'), ['extension_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_pbx_id'), ['pbx_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_status'), ['status'], unique=False)

    op.create_table('phonebook_visibility',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('phonebook_id', sa.String(length=36), nullable=False),
    sa.Column('extension_id', sa.String(length=36), nullable=True),
    sa.Column('extension_group_id', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['extension_group_id'], ['extension_groups.id'], name=op.f('fk_phonebook_visibility_extension_group_id_extension_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['extension_id'], ['extensions.id'], name=op.f('fk_phonebook_visibility_extension_id_extensions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['phonebook_id'], ['phonebooks.id'], name=op.f('fk_phonebook_visibility_phonebook_id_phonebooks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_phonebook_visibility')),
    sa.UniqueConstraint('phonebook_id', 'extension_id', 'extension_group_id', name=op.f('uq_phonebook_visibility_phonebook_id_extension_id_extension_group_id'))
    )
    with op.batch_alter_table('phonebook_visibility', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_phonebook_visibility_extension_group_id'), ['extension_group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_phonebook_visibility_extension_id'), ['extension_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_phonebook_visibility_phonebook_id'), ['phonebook_id'], unique=False)

    op.create_table('sync_changes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('pbx_id', sa.String(length=36), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('object_type', sa.String(length=24), nullable=False),
    sa.Column('object_id', sa.String(length=36), nullable=False),
    sa.Column('entra_id', sa.String(length=64), nullable=True),
    sa.Column('display_name', sa.String(length=400), nullable=True),
    sa.Column('fields', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['pbx_id'], ['pbxes.id'], name=op.f('fk_sync_changes_pbx_id_pbxes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['sync_runs.id'], name=op.f('fk_sync_changes_run_id_sync_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_changes'))
    )
    with op.batch_alter_table('sync_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sync_changes_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sync_changes_pbx_id'), ['pbx_id'], unique=False)
        batch_op.create_index('ix_sync_changes_run_id_id', ['run_id', 'id'], unique=False)

    op.create_table('teams_presence_settings',
    sa.Column('extension_id', sa.String(length=36), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('mapping', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['extension_id'], ['extensions.id'], name=op.f('fk_teams_presence_settings_extension_id_extensions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('extension_id', name=op.f('pk_teams_presence_settings'))
    )



def downgrade() -> None:

    op.drop_table('teams_presence_settings')
    with op.batch_alter_table('sync_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_changes_run_id_id')
        batch_op.drop_index(batch_op.f('ix_sync_changes_pbx_id'))
        batch_op.drop_index(batch_op.f('ix_sync_changes_created_at'))

    op.drop_table('sync_changes')
    with op.batch_alter_table('phonebook_visibility', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_phonebook_visibility_phonebook_id'))
        batch_op.drop_index(batch_op.f('ix_phonebook_visibility_extension_id'))
        batch_op.drop_index(batch_op.f('ix_phonebook_visibility_extension_group_id'))

    op.drop_table('phonebook_visibility')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_status'))
        batch_op.drop_index(batch_op.f('ix_outbox_pbx_id'))
        batch_op.drop_index(batch_op.f('ix_outbox_extension_id'))

    op.drop_table('outbox')
    op.drop_table('extension_presence')
    with op.batch_alter_table('extension_group_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_extension_group_members_extension_id'))

    op.drop_table('extension_group_members')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contacts_phonebook_id'))
        batch_op.drop_index(batch_op.f('ix_contacts_pbx_id'))
        batch_op.drop_index(batch_op.f('ix_contacts_managed_by'))
        batch_op.drop_index(batch_op.f('ix_contacts_extension_id'))

    op.drop_table('contacts')
    op.drop_table('token_caches')
    with op.batch_alter_table('sync_runs', schema=None) as batch_op:
        batch_op.drop_index('uq_sync_runs_one_running', postgresql_where=sa.text("status = 'running'"), sqlite_where=sa.text("status = 'running'"))
        batch_op.drop_index('uq_sync_runs_one_queued', postgresql_where=sa.text("status = 'queued' AND dry_run = false AND trigger <> 'cleanup'"), sqlite_where=sa.text("status = 'queued' AND dry_run = 0 AND trigger <> 'cleanup'"))
        batch_op.drop_index('ix_sync_runs_status')
        batch_op.drop_index('ix_sync_runs_pbx_queued_at')

    op.drop_table('sync_runs')
    op.drop_table('sync_rules')
    op.drop_table('sync_failures')
    op.drop_table('schedule_fires')
    with op.batch_alter_table('phonebooks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_phonebooks_pbx_id'))
        batch_op.drop_index(batch_op.f('ix_phonebooks_managed_by'))

    op.drop_table('phonebooks')
    op.drop_table('pending_changes')
    with op.batch_alter_table('oauth_states', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_states_pbx_id'))

    op.drop_table('oauth_states')
    with op.batch_alter_table('notification_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_events_processed_at'))
        batch_op.drop_index(batch_op.f('ix_notification_events_pbx_id'))

    op.drop_table('notification_events')
    op.drop_table('integrations')
    with op.batch_alter_table('graph_subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_graph_subscriptions_pbx_id'))

    op.drop_table('graph_subscriptions')
    with op.batch_alter_table('extensions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_extensions_pbx_id'))
        batch_op.drop_index('ix_extensions_pbx_former_entra_id')
        batch_op.drop_index(batch_op.f('ix_extensions_managed_by'))

    op.drop_table('extensions')
    with op.batch_alter_table('extension_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_extension_groups_pbx_id'))
        batch_op.drop_index(batch_op.f('ix_extension_groups_managed_by'))

    op.drop_table('extension_groups')
    op.drop_table('delta_links')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_pbx_id'))

    op.drop_table('api_keys')
    op.drop_table('pbxes')

